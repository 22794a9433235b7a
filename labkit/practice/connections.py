"""Guarding the practice server's connections: slow or idle clients cannot hold it.

uvicorn times out an idle keep-alive connection (``timeout_keep_alive``) but not a connection that
never finishes its request headers, nor one that stops sending its body, and it has no connection
limit of its own that leaves room for real requests (its ``limit_concurrency`` answers 503 to every
newcomer once slow connections fill it). :func:`guarded_protocol` wraps uvicorn's HTTP protocol with:

- a header timeout: the request line and headers must arrive within ``header_timeout`` seconds of the
  connection opening (or of the previous response ending), however slowly the bytes trickle in;
- a body timeout: a request body that stops arriving for ``body_timeout`` seconds is dropped;
- a header size limit (431) and a connection limit: at the limit, the connection that has waited
  longest without a request in progress is closed to make room, and when every connection is busy
  the newcomer is refused with a 503; both are logged (at most once every few seconds).

Example:
    >>> cls = guarded_protocol(header_timeout=10, body_timeout=30, max_connections=100)
    >>> cls.__name__
    'GuardedHTTPProtocol'
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

try:
    import resource
except ImportError:  # Windows: no ulimit to respect
    resource = None  # type: ignore[assignment]

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["guarded_protocol", "connection_ceiling", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 64 * 1024
_TICK = 1.0
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
    (``ulimit -n``) is lower, leaving 64 descriptors for everything else. With ``raise_soft_limit``
    (a server process of its own) the soft limit is first raised towards the hard one.

    Example:
        >>> 0 < connection_ceiling(100) <= 100
        True
    """
    if resource is None:
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_soft_limit and soft != resource.RLIM_INFINITY:
        target = wanted + 64 if hard == resource.RLIM_INFINITY else min(hard, wanted + 64)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - 64))


def guarded_protocol(*, header_timeout: float, body_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the guards above (pass it as ``uvicorn.Config(http=…)``).

    Example:
        >>> import asyncio
        >>> issubclass(guarded_protocol(header_timeout=5, body_timeout=5, max_connections=10), asyncio.Protocol)
        True
    """
    refusals = _Throttle()
    evictions = _Throttle()
    base: Any = AutoHTTPProtocol

    class GuardedHTTPProtocol(base):  # type: ignore[misc, valid-type]
        _guard_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            now = self.loop.time()
            self._waiting_since = now  # waiting for a request's headers since
            self._last_data = now
            self._header_bytes = 0
            self._seen_cycle: object | None = None
            if len(self.connections) > max_connections and not self._make_room():
                self._refuse()
                return
            self._guard_timer = self.loop.call_later(_TICK, self._guard)

        def _busy(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete

        def _make_room(self) -> bool:
            idle = [c for c in self.connections if c is not self and not GuardedHTTPProtocol._busy(c)
                    and not c.transport.is_closing()]
            if not idle:
                return False
            victim = min(idle, key=lambda c: getattr(c, "_waiting_since", 0.0))
            waited = self.loop.time() - getattr(victim, "_waiting_since", self.loop.time())
            evictions.warn(f"practice server: {len(self.connections) - 1} connections open, at the limit of "
                           f"{max_connections}: closed an idle connection from {_addr(victim)} (no request for "
                           f"{waited:.1f} s) to serve a new one")
            victim.transport.close()
            return True

        def _refuse(self) -> None:
            refusals.warn(f"practice server: refused a connection from {_addr(self)}: {len(self.connections) - 1} "
                          f"connections open, all with a request in progress (limit {max_connections})")
            body = b"Too many connections: retry in a few seconds"
            self.transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"connection: close\r\nretry-after: 5\r\ncontent-length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            self._last_data = self.loop.time()
            waiting = not self._busy()
            super().data_received(data)
            if waiting and not self._busy() and not self.transport.is_closing():
                self._header_bytes += len(data)  # still no complete request line and headers
                if self._header_bytes > MAX_HEADER_BYTES:
                    self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
                                         b"content-length: 0\r\n\r\n")
                    self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
                self._guard_timer = None
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
                if cycle.more_body and not cycle.disconnected and now - self._last_data > body_timeout:
                    self.transport.close()  # the body stopped arriving; the app sees a disconnect
                    return
                self._waiting_since = now
            else:
                if cycle is not self._seen_cycle:  # a response ended since the last look
                    self._seen_cycle = cycle
                    self._waiting_since = now
                    self._header_bytes = 0
                if now - self._waiting_since > header_timeout:
                    self.transport.close()  # no complete request in time (idle or trickling headers)
                    return
            self._guard_timer = self.loop.call_later(_TICK, self._guard)

    return GuardedHTTPProtocol


def _addr(protocol: Any) -> str:
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
