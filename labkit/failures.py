"""Turning openai/httpx exceptions into labkit errors that say what to do.

The client reads error bodies of both backends on its own (written against the captured answers):
FastChat's flat ``{"object":"error","message","code"}``, vLLM's ``{"error":{"message",…}}``,
FastChat's ``{"detail":{"error":{…}}}`` for a bad key, and FastChat's mid-stream
``{"text","error_code"}`` event.
"""

from __future__ import annotations

import importlib
from typing import Any

import openai

from .config import mask_key
from .errors import (
    AuthError,
    BackendError,
    BackendUnreachable,
    LabkitError,
    ModelNotFound,
    RateLimited,
    RequestRejected,
)

__all__ = ["transport_errors", "timeout_errors", "error_message", "translate_error"]


def _exception_types(attr: str) -> tuple[type[BaseException], ...]:
    """The named exception class from whichever HTTP libraries are installed (openai 3.x uses httpx2;
    older releases use httpx). Resolved once, at import: importing inside an ``except`` clause while
    a stream is open can let the garbage collector finalise openai's generators mid-import."""
    found: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        kind = getattr(module, attr, None)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            found.append(kind)
    return tuple(found)


_TRANSPORT_ERRORS = _exception_types("TransportError") + (openai.APIConnectionError,)
_TIMEOUT_ERRORS = _exception_types("TimeoutException") + (openai.APITimeoutError,)


def transport_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the connection broke (dropped, reset, incomplete body).

    Example:
        >>> import openai
        >>> openai.APIConnectionError in transport_errors()
        True
    """
    return _TRANSPORT_ERRORS


def timeout_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean nothing arrived in time.

    Example:
        >>> import openai
        >>> openai.APITimeoutError in timeout_errors()
        True
    """
    return _TIMEOUT_ERRORS


def error_message(body: Any) -> tuple[str, Any]:
    """The human message and code in an error body of either backend.

    Example:
        >>> error_message({"object": "error", "message": "Only llava-v1.6-34b allowed now", "code": 40301})
        ('Only llava-v1.6-34b allowed now', 40301)
        >>> error_message({"error": {"message": "bad", "code": 400}})
        ('bad', 400)
    """
    if isinstance(body, dict):
        for key in ("error", "detail"):
            if isinstance(body.get(key), dict):
                return error_message(body[key])
        if "message" in body:
            return str(body.get("message") or ""), body.get("code")
        if "text" in body and "error_code" in body:
            return str(body["text"]), body["error_code"]
        for key in ("error", "detail"):
            if isinstance(body.get(key), str):
                return body[key], body.get("code")
    return (str(body) if body else ""), None


def _hint_for(code: Any, message: str) -> str:
    lowered = message.lower()
    if code == 40303 or "context length" in lowered:
        return ("Shorten the conversation or drop images (labkit.Conversation trims old images), "
                "or ask for fewer max_tokens.")
    if code == 40302 or any(w in lowered for w in ("minimum", "maximum", "must be at least", "must be at most")):
        return "Use max_tokens ≥ 1, 0 ≤ temperature ≤ 2 and 0 ≤ top_p ≤ 1."
    if "stream" in lowered:
        return "This backend answers streaming calls only; labkit.chat streams for you."
    if "image" in lowered:
        return "Send one image per request, encoded with labkit.encode_image(path)."
    return "Check the request's fields against the course API document."


def translate_error(exc: BaseException, *, base_url: str, model: str, api_key: str | None) -> LabkitError:
    """A labkit error, with the fix, for an exception raised before any answer arrived.

    Example:
        >>> import httpx2, openai
        >>> req = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
        >>> err = translate_error(openai.APIConnectionError(request=req), base_url="http://127.0.0.1:9/v1",
        ...                       model="llava-v1.6-34b", api_key=None)
        >>> str(err)[:45]
        'Nothing is listening at http://127.0.0.1:9/v1'
    """
    if isinstance(exc, LabkitError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message, code = error_message(exc.body)
        message = message or exc.message
        if status in (401, 403):
            return AuthError(
                f"The backend at {base_url} refused the API key {mask_key(api_key)} (HTTP {status}). "
                "Set LABKIT_API_KEY (or OPENAI_API_KEY) to the key your TA gave you, then restart the kernel.",
                status=status, body=exc.body)
        if code == 40301 or (status == 404 and "model" in message.lower()):
            return ModelNotFound(
                f"The backend at {base_url} does not serve the model {model!r} ({message}). "
                "Set LABKIT_MODEL (or pass model=...) to a name that `labkit doctor` lists.",
                status=status, body=exc.body)
        if status == 404:
            return BackendUnreachable(
                f"{base_url} has no /chat/completions endpoint (HTTP 404: {message or 'Not Found'}). "
                "Check LABKIT_BASE_URL: the course backend's ends in /api/v1, a vLLM server's in /v1.",
                status=status, body=exc.body)
        if status in (429, 503):
            return RateLimited(
                f"The backend at {base_url} is busy or limiting requests (HTTP {status}: {message}). "
                "Wait a little and try again; in a batch, lower the concurrency.",
                status=status, body=exc.body)
        if status in (400, 413, 422):
            return RequestRejected(
                f"The backend rejected the request (HTTP {status}, code {code}): {message} {_hint_for(code, message)}",
                status=status, body=exc.body)
        return BackendError(
            f"The backend at {base_url} failed (HTTP {status}): {message or 'no details'}. "
            "Try again; if it keeps failing, tell your TA.", status=status, body=exc.body)
    if isinstance(exc, timeout_errors()):
        return BackendUnreachable(
            f"The backend at {base_url} did not answer in time. It may be overloaded: try again, or raise "
            "LABKIT_TIMEOUT (seconds).")
    if isinstance(exc, transport_errors()):
        return BackendUnreachable(
            f"Nothing is listening at {base_url}: start the practice server with `labkit practice` "
            "or set LABKIT_BASE_URL to the course backend's URL (e.g. http://HOST:8008/api/v1).")
    return BackendError(f"Talking to {base_url} failed: {exc.__class__.__name__}: {exc}")
