"""The errors labkit raises.

Every message names the problem, the input that caused it and the fix, so a student can act on it
without reading a traceback from inside Pillow, httpx or openai.

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
    "ConfigError",
    "ImageError",
    "BackendError",
    "BackendUnreachable",
    "AuthError",
    "ModelNotFound",
    "RequestRejected",
    "RateLimited",
    "StreamError",
    "ServeError",
]


class LabkitError(Exception):
    """Base class of every error labkit raises on purpose."""


class ConfigError(LabkitError, ValueError):
    """A setting (environment variable or argument) has a value labkit cannot use."""


class ImageError(LabkitError, ValueError):
    """An input could not be turned into an image the model can see."""


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


class AuthError(BackendError):
    """The backend refused the API key (HTTP 401/403)."""


class ModelNotFound(BackendError):
    """The backend does not serve the requested model name."""


class RequestRejected(BackendError):
    """The backend rejected the request as invalid (HTTP 400/413/422)."""


class RateLimited(BackendError):
    """The backend is busy or limits this key (HTTP 429/503); trying later helps."""


class StreamError(BackendError):
    """A streaming answer broke off. ``partial_text`` holds what arrived before it did; ``reason`` is
    ``"dropped"`` (the connection broke), ``"stalled"`` (nothing arrived in time) or ``"backend"``
    (the backend sent an error event)."""

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        reason: str = "dropped",
        status: int | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.partial_text = partial_text
        self.reason = reason


class ServeError(LabkitError):
    """A locally launched model server (vLLM) failed to start or died."""
