"""Turning openai/httpx exceptions, and answers that are not chat streams, into labkit errors that
say what to do.

The client reads error bodies of both backends on its own (written against the captured answers):
FastChat's flat ``{"object":"error","message","code"}``, vLLM's ``{"error":{"message",…}}``,
FastChat's ``{"detail":{"error":{…}}}`` for a bad key, and FastChat's mid-stream
``{"text","error_code"}`` event. Anything else (a login portal's HTML page, a JSON page) is
summarised in one line, never pasted whole.
"""

from __future__ import annotations

import email.utils
import html
import json
import re
import time
from typing import Any

import httpx2
import openai

from .config import Secret, mask_key
from .errors import (
    AuthError,
    BackendError,
    BackendUnreachable,
    LabkitError,
    ModelNotFound,
    RateLimited,
    RequestRejected,
)
from .i18n import _
from .transport import ERROR_BODY_LIMIT

__all__ = ["transport_errors", "timeout_errors", "decoding_error", "error_message", "describe_body", "retry_after",
           "translate_error"]


# The HTTP library under openai's client (openai 3.x, the versions labkit supports, is built on httpx2):
# its exception classes, named here once. httpx itself is not imported: it is not what openai raises,
# and importing it (with its command line's click, rich and pygments) cost every kernel 5 MB.
_TRANSPORT_ERRORS = (httpx2.TransportError, openai.APIConnectionError)
_TIMEOUT_ERRORS = (httpx2.TimeoutException, openai.APITimeoutError)
_CONNECT_TIMEOUTS = (httpx2.ConnectTimeout, httpx2.PoolTimeout)
_DECODING_ERRORS = (httpx2.DecodingError,)

_SHORT = 120  # characters of a foreign body quoted in a message


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


def decoding_error(exc: BaseException | None) -> BaseException | None:
    """The HTTP library's "cannot decode this body" error (a garbled gzip) in ``exc`` or its causes.

    Example:
        >>> import httpx2
        >>> decoding_error(RuntimeError("x")) is None, decoding_error(httpx2.DecodingError("bad gzip")) is not None
        (True, True)
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, _DECODING_ERRORS):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


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


def _one_line(text: str, limit: int = _SHORT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_body(content_type: str | None, body: bytes | str, total: int | None = None) -> str:
    """What a body is, in a few words: an HTML page with its title, a JSON page, text, or nothing;
    never the whole body.

    Example:
        >>> describe_body("text/html", b"<html><head><title>Campus Login</title></head>" + b"x" * 3000)
        'an HTML page (<title>Campus Login</title>, 3,046 bytes)'
        >>> describe_body("application/json", '{"status": "ok"}')
        'a JSON document ({"status": "ok"}, 16 bytes)'
        >>> describe_body(None, b"")
        'an empty body'
    """
    data = body.encode("utf-8", "replace") if isinstance(body, str) else body
    size = len(data) if total is None else total
    text = data.decode("utf-8", "replace").strip()
    kind = (content_type or "").split(";")[0].strip().lower()
    if not text:
        return _("an empty body")
    if "html" in kind or text[:200].lower().lstrip().startswith(("<!doctype html", "<html", "<head", "<body")):
        found = re.search(r"<title[^>]*>(.*?)</title\s*>", text, re.IGNORECASE | re.DOTALL)
        if found and found.group(1).strip():
            title = _one_line(html.unescape(found.group(1)), 80)
            return _("an HTML page (<title>{title}</title>, {size:,} bytes)").format(title=title, size=size)
        return _("an HTML page without a title ({size:,} bytes)").format(size=size)
    if "json" in kind or text[:1] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("object") == "chat.completion":
            return _("a complete JSON answer instead of a stream ({size:,} bytes): the server ignored "
                     "stream=true").format(size=size)
        if parsed is not None:
            return _("a JSON document ({start}, {size:,} bytes)").format(start=_one_line(text, 80), size=size)
    first = text.splitlines()[0]
    return _("text starting {first!r} ({size:,} bytes, content type {kind})").format(
        first=_one_line(first, 80), size=size, kind=kind or _("not given"))


def retry_after(headers: Any) -> float | None:
    """The wait in seconds a ``Retry-After`` (or ``retry-after-ms``) header asks for, or ``None``.

    Example:
        >>> retry_after({"retry-after": "60"}), retry_after({"retry-after-ms": "1500"}), retry_after({})
        (60.0, 1.5, None)
    """
    if not headers:
        return None
    try:
        milliseconds = headers.get("retry-after-ms")
        if milliseconds:
            return max(0.0, float(milliseconds) / 1000)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_RANGE_WORDS = ("minimum", "maximum", "must be at least", "must be at most", "must be in", "must be between",
                "greater than", "less than", "must be non-negative", "must be positive", "out of range")


def _hint_for(code: Any, message: str) -> str:
    lowered = message.lower()
    if code == 40303 or "context length" in lowered:
        return _("Shorten the conversation or drop images (labkit.Conversation trims old images), "
                 "or ask for fewer max_tokens.")
    if code == 40302 or any(w in lowered for w in _RANGE_WORDS):
        return _("Use max_tokens ≥ 1, 0 ≤ temperature ≤ 2 and 0 ≤ top_p ≤ 1.")
    if "stream" in lowered:
        return _("This backend answers streaming calls only; labkit.chat streams for you.")
    if "image" in lowered:
        return _("Send one image per request, encoded with labkit.encode_image(path).")
    return _("Check the request's fields against the course API document.")


def _status_message(exc: openai.APIStatusError, timeout: float | None = None) -> tuple[str, Any]:
    """The backend's own message, or a one-line summary when the body is not an API error. labkit's
    clients read an error body only up to a bound and within the timeout (:mod:`labkit.transport`):
    a body cut short is summarised from what arrived, and the message says so."""
    message, code = error_message(exc.body)
    if isinstance(exc.body, (dict, list)):
        return message or exc.message, code
    response = getattr(exc, "response", None)
    content_type = response.headers.get("content-type") if response is not None else None
    raw = getattr(exc, "head", None)
    if raw is None:
        try:
            raw = response.content if response is not None else b""
        except Exception:  # a body that was never read
            raw = b""
    if getattr(exc, "garbled", False):
        encoding = response.headers.get("content-encoding", "?") if response is not None else "?"
        return _("a body marked Content-Encoding: {encoding} that cannot be decoded (garbled by the server or a "
                 "proxy on the way)").format(encoding=encoding), None
    if not (exc.body or raw):
        return "", None
    said = describe_body(content_type, raw or str(exc.body))
    if getattr(exc, "cut_by_deadline", False):
        said += _("; the rest of the body was still arriving after {seconds} s (LABKIT_TIMEOUT) and was not "
                  "waited for").format(seconds=f"{timeout:g}" if timeout is not None else "?")
    elif getattr(exc, "complete", True) is False and len(raw) >= ERROR_BODY_LIMIT:
        said += _("; only its first {size:,} bytes were read").format(size=len(raw))
    elif getattr(exc, "complete", True) is False:
        said += _("; the connection ended before the rest of the body came")
    return said, None


def translate_error(exc: BaseException, *, base_url: str, model: str, api_key: str | Secret | None,
                    timeout: float | None = None) -> LabkitError:
    """A labkit error, with the fix, for an exception raised before any answer arrived.

    Example:
        >>> import httpx2, openai
        >>> req = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
        >>> err = translate_error(openai.APIConnectionError(request=req), base_url="http://127.0.0.1:9/v1",
        ...                       model="llava-v1.6-34b", api_key=None)
        >>> str(err)[:45]
        'Nothing is listening at http://127.0.0.1:9/v1'
    """
    __tracebackhide__ = True
    if isinstance(exc, LabkitError):
        return exc
    waited = f"{timeout:g}" if timeout is not None else "?"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message, code = _status_message(exc, timeout)
        if status in (401, 403):
            return AuthError(_(
                "The backend at {url} refused the API key {key} (HTTP {status}). Set LABKIT_API_KEY (or "
                "OPENAI_API_KEY) to the key your TA gave you, then restart the kernel.").format(
                url=base_url, key=mask_key(api_key), status=status), status=status, body=exc.body)
        if code == 40301 or (status == 404 and "model" in message.lower() and isinstance(exc.body, dict)):
            return ModelNotFound(_(
                "The backend at {url} does not serve the model {model!r} ({said}). Set LABKIT_MODEL (or pass "
                "model=...) to a name that `labkit doctor` lists.").format(url=base_url, model=model, said=message),
                status=status, body=exc.body)
        if status == 404:
            return BackendUnreachable(_(
                "{url} has no /chat/completions endpoint (HTTP 404: {said}). Check LABKIT_BASE_URL: the course "
                "backend's ends in /api/v1, a vLLM server's in /v1.").format(
                url=base_url, said=message or "Not Found"), status=status, body=exc.body)
        if status in (429, 503):
            wait = retry_after(exc.response.headers) if getattr(exc, "response", None) is not None else None
            asked = _(" It asks to wait {seconds:g} s.").format(seconds=wait) if wait is not None else ""
            return RateLimited(_(
                "The backend at {url} is busy or limiting requests (HTTP {status}: {said}).{asked} Wait a little "
                "and try again; in a batch, lower the concurrency.").format(
                url=base_url, status=status, said=message or _("no details"), asked=asked),
                status=status, body=exc.body, retry_after=wait)
        if status in (400, 413, 422):
            return RequestRejected(_(
                "The backend rejected the request (HTTP {status}, code {code}): {said} {hint}").format(
                status=status, code=code, said=message, hint=_hint_for(code, message)), status=status, body=exc.body)
        return BackendError(_(
            "The backend at {url} failed (HTTP {status}): {said}. Try again; if it keeps failing, tell your "
            "TA.").format(url=base_url, status=status, said=message or _("no details")), status=status, body=exc.body)
    if isinstance(exc, timeout_errors()):
        if isinstance(exc, _CONNECT_TIMEOUTS) or isinstance(exc.__cause__, _CONNECT_TIMEOUTS):
            return BackendUnreachable(_(
                "Could not connect to {url} within {seconds} s: nothing answers at that address (a wrong host, "
                "a firewall, or a VPN that is off). Check LABKIT_BASE_URL and your network.").format(
                url=base_url, seconds=waited))
        return BackendUnreachable(_(
            "The server at {url} accepted the connection but sent nothing for {seconds} s (LABKIT_TIMEOUT). "
            "If LABKIT_BASE_URL names the wrong port or service, fix it; if the backend is just busy, try "
            "again or raise LABKIT_TIMEOUT.").format(url=base_url, seconds=waited))
    if isinstance(exc, transport_errors()):
        return BackendUnreachable(_(
            "Nothing is listening at {url}: start the practice server with `labkit practice` or set "
            "LABKIT_BASE_URL to the course backend's URL (e.g. http://HOST:8008/api/v1).").format(url=base_url))
    return BackendError(_("Talking to {url} failed: {error}").format(
        url=base_url, error=f"{exc.__class__.__name__}: {exc}"))
