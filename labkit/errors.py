"""The errors labkit raises.

Every message names the problem, the input that caused it and the fix, so a student can act on it
without reading a traceback from inside Pillow, httpx or openai. Code raises the leaves, never the
base class. The tree, and where each error is raised::

    LabkitError                      catch-all for "labkit said no"; never raised itself
    ├── UsageError (ValueError)      an argument labkit cannot use: chat(42), stream_chat(stream=…),
    │                                run_batch(concurrency=0), duplicate batch ids, a NaN temperature
    │                                or a lone surrogate that cannot be sent         (streaming, batch)
    ├── ConfigError (ValueError)     a setting (LABKIT_* variable or configure() argument)   (config)
    ├── ImageError (ValueError)      an input that cannot become an image                   (images)
    ├── OutputError (OSError)        a results file labkit cannot write: permissions, or another
    │                                run holds its lock                                     (batch)
    ├── BackendError                 the backend failed; .status and .body when it answered (failures)
    │   ├── BackendUnreachable       nothing usable answered: refused, timed out, wrong path,
    │   │                            embedded practice server failed to start   (failures, backend)
    │   ├── UnexpectedResponse       something answered, but not a chat stream: an HTML login page,
    │   │                            a JSON page, keep-alive comments only     (streaming, doctor)
    │   ├── AuthError                HTTP 401/403: the key was refused                      (failures)
    │   ├── ModelNotFound            the backend does not serve that model name             (failures)
    │   ├── RequestRejected          HTTP 400/413/422: the request was invalid              (failures)
    │   ├── RateLimited              HTTP 429/503: busy; .retry_after when the backend said (failures)
    │   └── StreamError              an answer broke off, finished empty or passed its deadline;
    │                                .partial_text, .reason, .finish_reason                 (streaming)
    └── ServeError                   a local vLLM server failed to start or died            (serve)

Example:
    >>> import labkit
    >>> try:
    ...     labkit.encode_image("no-such-photo.jpg")
    ... except labkit.ImageError as e:
    ...     print("Fix:", e)  # doctest: +ELLIPSIS
    Fix: No file at 'no-such-photo.jpg'...
"""

from __future__ import annotations

__all__ = [
    "LabkitError",
    "UsageError",
    "ConfigError",
    "ImageError",
    "OutputError",
    "BackendError",
    "BackendUnreachable",
    "UnexpectedResponse",
    "AuthError",
    "ModelNotFound",
    "RequestRejected",
    "RateLimited",
    "StreamError",
    "ServeError",
]


class LabkitError(Exception):
    """Base class of every error labkit raises on purpose (only its subclasses are raised)."""


class UsageError(LabkitError, ValueError):
    """A function was called with an argument it cannot use (a wrong type, a clash, a bad count)."""


class ConfigError(LabkitError, ValueError):
    """A setting (environment variable or argument) has a value labkit cannot use."""


class ImageError(LabkitError, ValueError):
    """An input could not be turned into an image the model can see."""


class OutputError(LabkitError, OSError):
    """labkit cannot write a results file: no permission, or another run is writing it."""


class BackendError(LabkitError):
    """The backend answered with an error, or could not be reached.

    ``status`` is the HTTP status when there was one; ``body`` the decoded error body.
    """

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class BackendUnreachable(BackendError):
    """Nothing answered at the configured base URL (connection refused, DNS, timeout, wrong path)."""


class UnexpectedResponse(BackendError):
    """Something answered at the base URL, but not with a chat stream (an HTML page, a JSON page,
    keep-alive comments only): the URL points at the wrong service."""


class AuthError(BackendError):
    """The backend refused the API key (HTTP 401/403)."""


class ModelNotFound(BackendError):
    """The backend does not serve the requested model name."""


class RequestRejected(BackendError):
    """The backend rejected the request as invalid (HTTP 400/413/422)."""


class RateLimited(BackendError):
    """The backend is busy or limits this key (HTTP 429/503); trying later helps.

    ``retry_after`` is the wait in seconds the backend asked for (``None`` when it did not say).
    """

    def __init__(self, message: str, *, status: int | None = None, body: object = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class StreamError(BackendError):
    """A streaming answer broke off. ``partial_text`` holds what arrived before it did; ``reason`` is
    ``"dropped"`` (the connection broke), ``"stalled"`` (nothing arrived in time), ``"incomplete"``
    (the stream ended without a finish reason), ``"empty"`` (it finished, ``finish_reason`` says how,
    without a word of answer), ``"backend"`` (the backend sent an error event), ``"malformed"`` (an
    event that is not JSON, a body that cannot be decoded) or ``"deadline"`` (the answer took longer
    than its ``deadline=`` / ``LABKIT_MAX_SECONDS``)."""

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        reason: str = "dropped",
        status: int | None = None,
        body: object = None,
        finish_reason: str | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.partial_text = partial_text
        self.reason = reason
        self.finish_reason = finish_reason


class ServeError(LabkitError):
    """A locally launched model server (vLLM) failed to start or died."""
