"""Guarding the practice server's connections: slow, idle or greedy clients cannot hold it.

uvicorn times out an idle keep-alive connection (``timeout_keep_alive``) but not a connection that
never finishes its request headers, nor one that sends its body a byte at a time, and it has no
connection limit of its own that leaves room for real requests (its ``limit_concurrency`` answers 503
to every newcomer once slow connections fill it). :func:`guarded_protocol` wraps uvicorn's HTTP
protocol with:

- a header deadline: the request line and headers must arrive within ``header_timeout`` seconds of
  the connection opening (or of the previous response ending), however slowly the bytes trickle in;
- a whole-body deadline: a request body must arrive in full within ``body_timeout`` seconds of its
  headers, however it trickles (a byte every few seconds does not keep it alive);
- a header size limit (431) and a connection limit: at the limit, the oldest connection that is
  idle (no request in progress) or still sending its body after a second is closed to make room
  (first from the address holding the most connections);
- a per-client-address share (half the limit by default): beyond it, a newcomer from that address
  first takes the place of one of that address's own idle or body-trickling connections;
- ``/health`` is always answered: a newcomer that finds no room is kept for one request (a small
  reserve beyond the limit, with a short header deadline); ``GET /health`` is answered, anything else
  gets a 503 with ``Retry-After``, and the connection is closed. Refusals and evictions are logged
  (at most once every few seconds).

Example:
    >>> cls = guarded_protocol(header_timeout=10, body_timeout=30, max_connections=100)
    >>> cls.__name__
    'GuardedHTTPProtocol'
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

try:
    import resource
except ImportError:  # Windows: no ulimit to respect
    resource = None  # type: ignore[assignment]

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["guarded_protocol", "connection_ceiling", "MAX_HEADER_BYTES", "RESERVE"]

MAX_HEADER_BYTES = 64 * 1024
RESERVE = 256  # connections beyond the limit, each kept for one request: /health, or a 503
OVERFLOW_HEADER_TIMEOUT = 2.0  # seconds such a connection has to send its request's headers
MIN_BODY_AGE = 1.0  # a body that has been arriving for less is never closed to make room
_SCAN = 256  # connections looked at, oldest first, to find one to close
_TICK = 1.0
_BUSY = b"Too many connections: retry in a few seconds"
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"retry-after: 5\r\ncontent-length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)
_log = logging.getLogger("uvicorn.error")


class _Throttle:
    """Log a repeated warning at most once every ``every`` seconds, with the count since."""

    def __init__(self, every: float = 5.0) -> None:
        self.every, self.last, self.skipped = every, 0.0, 0

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.skipped += 1
            return
        more = f" (and {self.skipped} more like it)" if self.skipped else ""
        self.last, self.skipped = now, 0
        _log.warning("%s%s", message, more)


def connection_ceiling(wanted: int, *, raise_soft_limit: bool = False) -> int:
    """The connection limit this process can keep: ``wanted``, or less when the open-files limit
    (``ulimit -n``) is lower, leaving 64 descriptors for everything else and :data:`RESERVE` for the
    connections kept beyond the limit. With ``raise_soft_limit`` (a server process of its own) the
    soft limit is first raised towards the hard one.

    Example:
        >>> 0 < connection_ceiling(100) <= 100
        True
    """
    if resource is None:
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_soft_limit and soft != resource.RLIM_INFINITY:
        spare = 64 + RESERVE
        target = wanted + spare if hard == resource.RLIM_INFINITY else min(hard, wanted + spare)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - 64 - RESERVE))


def guarded_protocol(*, header_timeout: float, body_timeout: float, max_connections: int,
                     max_per_client: int | None = None, reserve: int = RESERVE) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the guards above (pass it as ``uvicorn.Config(http=…)``).

    ``max_per_client`` is one client address's share of ``max_connections`` (default: half);
    ``reserve`` is how many connections beyond the limit may wait to be told 503 (or get ``/health``).

    Example:
        >>> import asyncio
        >>> issubclass(guarded_protocol(header_timeout=5, body_timeout=5, max_connections=10), asyncio.Protocol)
        True
    """
    share = max_per_client if max_per_client is not None else max(1, max_connections // 2)
    refusals = _Throttle()
    evictions = _Throttle()
    cuts = _Throttle()
    admitted: dict[Any, None] = {}  # connections within the limit, oldest first
    by_host: dict[str, dict[Any, None]] = {}  # the same, per client address
    overflow: dict[Any, None] = {}  # connections beyond the limit, oldest first: one request each
    base: Any = AutoHTTPProtocol

    def busy(c: Any) -> bool:
        cycle = c.cycle
        return cycle is not None and not cycle.response_complete

    def sending_body(c: Any, now: float) -> bool:
        cycle = c.cycle
        return (busy(c) and cycle.more_body and not cycle.disconnected
                and now - c._request_since >= MIN_BODY_AGE)

    def held(host: str) -> int:
        return len(by_host.get(host, ()))

    def victim_in(pool: dict[Any, None], now: float) -> Any:
        """The oldest connection in ``pool`` that is idle or still sending its body (a bounded look)."""
        for i, c in enumerate(pool):
            if i >= _SCAN:
                break
            if not c.transport.is_closing() and (not busy(c) or sending_body(c, now)):
                return c
        return None

    class GuardedHTTPProtocol(base):  # type: ignore[misc, valid-type]
        _guard_timer: asyncio.TimerHandle | None = None
        _host = "?"
        _overflow = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            now = self.loop.time()
            self._waiting_since = now  # waiting for a request's headers since
            self._request_since = now  # the current request's headers arrived at
            self._header_bytes = 0
            self._seen_cycle: object | None = None
            self._host = self.client[0] if self.client else "?"
            if held(self._host) >= share and not self._make_room(self._host):
                self._keep_for_one_request(f"{held(self._host)} connections are open from that address, its "
                                           f"share of the limit of {max_connections}")
            elif len(admitted) >= max_connections and not self._make_room(None):
                self._keep_for_one_request(f"{len(admitted)} connections open, all with a request in progress "
                                           f"(limit {max_connections})")
            else:
                admitted[self] = None
                by_host.setdefault(self._host, {})[self] = None
            self._guard_timer = self.loop.call_later(_TICK, self._guard)

        def _make_room(self, host: str | None) -> bool:
            """Close the oldest idle or body-sending connection (of ``host``, if given; else first from the
            address holding the most connections)."""
            now = self.loop.time()
            if host is not None:
                victim = victim_in(by_host.get(host, {}), now)
            else:
                greedy = max(by_host, key=held, default=None)
                victim = (victim_in(by_host[greedy], now) if greedy is not None else None) or victim_in(admitted, now)
            if victim is None:
                return False
            if not busy(victim):
                why = f"an idle connection from {_addr(victim)} (no request for {now - victim._waiting_since:.1f} s)"
            else:
                why = (f"a connection from {_addr(victim)} that had been sending its request body for "
                       f"{now - victim._request_since:.1f} s ({held(victim._host)} open from that address)")
            where = (f"{held(host)} of them from {host}, its share of the limit of {max_connections}" if host
                     else f"at the limit of {max_connections}")
            evictions.warn(f"practice server: {len(admitted)} connections open, {where}: closed {why} to serve a "
                           "new one")
            victim._forget()
            victim.transport.close()
            return True

        def _keep_for_one_request(self, why: str) -> None:
            """Beyond the limit: answer ``/health`` or a 503, then close; with the reserve full too, a 503 at once."""
            self._overflow = True
            if len(overflow) >= reserve:  # the reserve is full too: refuse at once (never close another)
                refusals.warn(f"practice server: refused a connection from {_addr(self)}: {why}, and "
                              f"{len(overflow)} more are waiting to be told")
                self.transport.write(_REFUSAL)
                self.transport.close()
                return
            overflow[self] = None
            self.app = _health_or_refuse(self.app, lambda: refusals.warn(
                f"practice server: refused a request from {_addr(self)}: {why}"))

        def _forget(self) -> None:
            if admitted.pop(self, 0) is None:
                mine = by_host[self._host]
                del mine[self]
                if not mine:
                    del by_host[self._host]
            overflow.pop(self, None)

        def data_received(self, data: bytes) -> None:
            waiting = not busy(self)
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:
                self._request_since = self.loop.time()  # a request's headers arrived: its body's clock starts
            if waiting and not busy(self) and not self.transport.is_closing():
                self._header_bytes += len(data)  # still no complete request line and headers
                if self._header_bytes > MAX_HEADER_BYTES:
                    self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
                                         b"content-length: 0\r\n\r\n")
                    self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
                self._guard_timer = None
            self._forget()
            super().connection_lost(exc)

        def _guard(self) -> None:
            self._guard_timer = None
            if self.transport.is_closing():
                return
            now = self.loop.time()
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                self._seen_cycle = cycle
                self._header_bytes = 0
                if cycle.more_body and not cycle.disconnected and now - self._request_since > body_timeout:
                    cuts.warn(f"practice server: closed a connection from {_addr(self)}: its request body had not "
                              f"arrived in full {body_timeout:g} s after its headers")
                    self.transport.close()  # the app sees a disconnect
                    return
                self._waiting_since = now
            else:
                if cycle is not self._seen_cycle:  # a response ended since the last look
                    self._seen_cycle = cycle
                    self._waiting_since = now
                    self._header_bytes = 0
                limit = min(header_timeout, OVERFLOW_HEADER_TIMEOUT) if self._overflow else header_timeout
                if now - self._waiting_since > limit:
                    self.transport.close()  # no complete request in time (idle or trickling headers)
                    return
            self._guard_timer = self.loop.call_later(_TICK, self._guard)

    return GuardedHTTPProtocol


def _health_or_refuse(app: Any, log: Callable[[], None]) -> Any:
    """The ASGI app for a connection beyond the limit: ``GET /health`` as usual, anything else a 503;
    either way the connection closes after it."""

    async def one_request(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/health" and scope["method"] in ("GET", "HEAD"):
            async def closing(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                await send(message)

            await app(scope, receive, closing)
            return
        log()
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"), (b"retry-after", b"5"),
            (b"content-length", str(len(_BUSY)).encode())]})
        await send({"type": "http.response.body", "body": _BUSY})

    return one_request


def _addr(protocol: Any) -> str:
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
