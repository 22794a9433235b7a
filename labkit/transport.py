"""What labkit adds to the openai client's HTTP layer: a deadline for every read, and error bodies
read only as far as they explain.

httpx's read timeout restarts on every byte, so a server that trickles its response headers or an
error body one byte a second is never timed out, and the openai client reads a whole error body
into memory however large it is. :func:`install` (called by :func:`labkit.client`) fixes both on
a client:

- every network read and write of the client waits at most until the deadline of the
  :func:`deadline_scope` the calling thread is in (none outside one: the client behaves as before);
- an answer with an error status has its body read up to :data:`ERROR_BODY_LIMIT` bytes (enough to
  explain) and the rest is discarded: the openai error raised carries ``head`` (those bytes) and
  ``complete`` (whether the body ended within them and in time);
- an event stream that has sent ``data: [DONE]`` is read to its end when the openai client closes it
  (it stops at ``[DONE]``, before the body's last bytes), so its connection is kept for the next
  request instead of being closed and opened again: a batch of short answers spent a fifth of its
  time on that.

Example:
    >>> import openai
    >>> made = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k")
    >>> install(made)
    True
    >>> with deadline_scope(3.0) as scope:  # doctest: +SKIP
    ...     made.chat.completions.create(...)
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore2
import httpx2
import openai

__all__ = ["ERROR_BODY_LIMIT", "DeadlineScope", "BoundedStatusError", "deadline_scope", "install", "installed"]

ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error body that are read (decoded); the rest is discarded

_local = threading.local()


@dataclass
class DeadlineScope:
    """The deadline of the reads made in one ``with deadline_scope(...)`` block: ``at`` is a
    ``time.monotonic()`` instant; ``received`` counts the bytes read in it and ``expired`` says
    whether a read was cut by the deadline."""

    at: float
    received: int = 0
    expired: bool = False

    def left(self) -> float:
        """Seconds until the deadline (negative once it passed).

        Example:
            >>> DeadlineScope(time.monotonic() + 5).left() > 4
            True
        """
        return self.at - time.monotonic()


@contextmanager
def deadline_scope(seconds: float | None = None, *, at: float | None = None) -> Iterator[DeadlineScope]:
    """Bound every read of an installed client made by this thread inside the block: until ``at``
    (a ``time.monotonic()`` instant) or ``seconds`` from now, whichever is given (the earlier if
    both). A read cut by the deadline raises the HTTP library's read timeout.

    Example:
        >>> with deadline_scope(2.0) as scope:
        ...     0 < scope.left() <= 2.0
        True
    """
    limit = at if at is not None else float("inf")
    if seconds is not None:
        limit = min(limit, time.monotonic() + seconds)
    scope = DeadlineScope(limit)
    previous = getattr(_local, "scope", None)
    _local.scope = scope
    try:
        yield scope
    finally:
        _local.scope = previous


def _bounded(timeout: float | None) -> tuple[float | None, DeadlineScope | None]:
    scope: DeadlineScope | None = getattr(_local, "scope", None)
    if scope is None or scope.at == float("inf"):
        return timeout, scope
    left = scope.at - time.monotonic()
    if left <= 0:
        scope.expired = True
        raise httpcore2.ReadTimeout("labkit: the deadline passed")
    return (left if timeout is None else min(timeout, left)), scope


class _Stream(httpcore2.NetworkStream):
    """A network stream whose reads and writes end at the calling thread's deadline."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        bounded, scope = _bounded(timeout)
        try:
            data: bytes = self._inner.read(max_bytes, bounded)
        except httpcore2.ReadTimeout:
            if scope is not None and scope.at - time.monotonic() <= 0.01:
                scope.expired = True
            raise
        if scope is not None:
            scope.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        bounded, _scope = _bounded(timeout)
        self._inner.write(buffer, bounded)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore2.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    """Opens connections as ``inner`` does, wrapped in :class:`_Stream`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore2.NetworkStream:
        return _Stream(self.inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                              socket_options=socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore2.NetworkStream:
        return _Stream(self.inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class BoundedStatusError(openai.APIStatusError):
    """An error answer whose body was read only up to :data:`ERROR_BODY_LIMIT` bytes (and within the
    deadline). ``head`` holds the bytes read (decoded); ``complete`` whether that was the whole
    body; ``cut_by_deadline`` whether the deadline ended the read; ``garbled`` whether its
    ``Content-Encoding`` could not be decoded."""

    def __init__(self, message: str, *, response: Any, body: object, head: bytes, complete: bool,
                 cut_by_deadline: bool, garbled: bool = False) -> None:
        super().__init__(message, response=response, body=body)
        self.head = head
        self.complete = complete
        self.cut_by_deadline = cut_by_deadline
        self.garbled = garbled


_OPENAI_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
    404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}
_error_classes: dict[type[openai.APIStatusError], type[BoundedStatusError]] = {}


def _error_class(status: int) -> type[BoundedStatusError]:
    """The class raised for ``status``: also the openai client's own class for it (``except
    openai.BadRequestError`` around :func:`labkit.client` calls keeps working)."""
    base = _OPENAI_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    made = _error_classes.get(base)
    if made is None:
        made = _error_classes[base] = type(f"Bounded{base.__name__}", (BoundedStatusError, base), {})
    return made


_DRAIN_SECONDS = 0.5  # the longest wait for the end of a body after [DONE]


class _DrainAfterDone(httpx2.SyncByteStream):
    """A response body that, once ``data: [DONE]`` went by, is read to its end on close (a few bytes:
    the end of the chunked body), so the connection goes back to the pool. A stream closed before
    ``[DONE]`` (a person pressed stop) is closed at once, as before."""

    _TAIL = b"data: [DONE]"

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._pieces: Iterator[bytes] | None = None
        self._tail = b""

    def __iter__(self) -> Iterator[bytes]:
        self._pieces = iter(self._inner)
        for piece in self._pieces:
            self._tail = (self._tail + piece)[-64:]
            yield piece

    @property
    def elapsed(self) -> Any:
        return getattr(self._inner, "elapsed", None)

    def close(self) -> None:
        if self._pieces is not None and self._tail.rstrip().endswith(self._TAIL):
            drained = 0
            try:
                with deadline_scope(_DRAIN_SECONDS):  # a server that holds the body open is not waited for
                    for piece in self._pieces:  # the same reader: it goes on where the openai client stopped
                        drained += len(piece)
                        if drained > 4096:  # more than the end of a body: not worth waiting for
                            break
            except Exception:  # a broken or late end: the connection is closed below, as it would have been
                pass
        self._inner.close()


def _read_error_body(response: Any) -> None:
    """A response hook: an error answer's body is read up to the bound, the rest discarded, and the
    error raised here (the openai client passes its own errors on as they are). An event stream's
    body is wrapped so that its connection can be reused (:class:`_DrainAfterDone`)."""
    if response.status_code < 400:
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "text/event-stream" and response.headers.get("content-encoding", "identity") == "identity":
            response.stream = _DrainAfterDone(response.stream)
        return
    head = bytearray()
    complete, cut, garbled = False, False, False
    try:
        for piece in response.iter_bytes():
            head += piece
            if len(head) > ERROR_BODY_LIMIT:
                break
        else:
            complete = True
    except Exception as exc:  # a deadline, a dropped connection, a garbled encoding: keep what came
        cut = isinstance(exc, _timeouts())
        garbled = type(exc).__name__ == "DecodingError"
    finally:
        response.close()
    data = bytes(head[:ERROR_BODY_LIMIT])
    try:
        body: object = json.loads(data.decode("utf-8")) if data else None
    except ValueError:
        body = data.decode("utf-8", "replace") if data else None
    message = f"Error code: {response.status_code} - {body}"
    raise _error_class(response.status_code)(message, response=response, body=body, head=data, complete=complete,
                                              cut_by_deadline=cut, garbled=garbled)


def _timeouts() -> tuple[type[BaseException], ...]:
    return (httpx2.TimeoutException, httpcore2.TimeoutException)


def _pools(http_client: Any) -> Iterator[Any]:
    transports = [getattr(http_client, "_transport", None), *getattr(http_client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            yield pool


def install(made: openai.OpenAI) -> bool:
    """Give ``made``'s HTTP client the deadlines and the bounded error bodies; ``False`` when its HTTP
    layer is not one labkit knows (then only labkit's own checks between chunks apply). Installing
    twice changes nothing.

    Example:
        >>> install(openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k"))
        True
    """
    http_client = getattr(made, "_client", None)
    pools = list(_pools(http_client)) if http_client is not None else []
    if not pools:
        return False
    for pool in pools:
        if not isinstance(pool._network_backend, _Backend):
            pool._network_backend = _Backend(pool._network_backend)
    hooks = http_client.event_hooks
    if _read_error_body not in hooks.get("response", []):
        hooks["response"] = [*hooks.get("response", []), _read_error_body]
        http_client.event_hooks = hooks
    return True


def installed(made: Any) -> bool:
    """Whether :func:`install` was applied to ``made`` (a client labkit built).

    Example:
        >>> installed(object())
        False
    """
    http_client = getattr(made, "_client", None)
    hooks = getattr(http_client, "event_hooks", None) or {}
    return _read_error_body in hooks.get("response", [])
