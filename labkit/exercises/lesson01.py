"""Self-checks of lesson 01 (the first request): a message built by hand, and an SSE reader.

Example:
    >>> bool(check_message({"role": "user", "content": "hi"}, quiet=True))
    False
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..cleanup import strip_role_prefix
from ..i18n import _
from ._common import N_, Checker, Verdict, call_student, describe_error, guarded, need, not_callable
from ._images import decode_data_url, similar
from ._sse_stub import Scripted, serve_script

__all__ = ["need", "check_message", "check_raw_reader"]


@guarded(1)
def check_message(message: object, image_path: str = "images/coffee.jpg", *, quiet: bool = False) -> Verdict:
    """Exercise 1: a user message with a question and ``image_path`` as a base64 data URL.

    Example:
        >>> bool(check_message(None, quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    if not isinstance(message, dict):
        c.fail(_("my_message should be a dict (one chat message), but it is {kind}").format(
            kind=type(message).__name__))
        return c.done()
    c.expect(message.get("role") == "user", _("the message's role is {role!r}; a question from you has another role")
             .format(role=message.get("role")))
    content = message.get("content")
    if not isinstance(content, list):
        c.fail(_("content is a {kind}: a message with an image needs a list of content parts").format(
            kind=type(content).__name__))
        return c.done()
    texts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
    images = [p for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
    others = [p for p in content if not (isinstance(p, dict) and p.get("type") in ("text", "image_url"))]
    c.expect(not others, _("some content parts have no known type (text or image_url): {parts}")
             .format(parts=str(others)[:120]))
    c.expect(len(texts) == 1 and isinstance(texts[0].get("text"), str) and texts[0]["text"].strip() != "",
             _("there should be exactly one text part with your question in its \"text\" field"))
    if len(images) != 1:
        c.fail(_("there should be exactly one image_url part; found {count}").format(count=len(images)))
        return c.done()
    inner = images[0].get("image_url")
    if not isinstance(inner, dict) or "url" not in inner:
        c.fail(_("the image_url part's \"image_url\" field should be an object with a \"url\" key, got {got}")
               .format(got=repr(inner)[:60]))
        return c.done()
    url = inner["url"]
    sent = decode_data_url(url)
    if sent is None:
        start = url[:30] if isinstance(url, str) else type(url).__name__
        c.fail(_("the url ({start}…) is not a data URL holding a base64 image: it should start with "
                 "data:image/<format>;base64, followed by the encoded bytes").format(start=start))
        return c.done()
    path = Path(image_path)
    if path.is_file():
        with Image.open(path) as original:
            c.expect(similar(sent, original), _("the image in the url is not {path}: did you encode another file?")
                     .format(path=image_path))
    return c.done()


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None, model: str = "llava-v1.6-34b") -> bytes:
    return _event({"id": "chatcmpl-check", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _stream(texts: list[str], *, finish: str = "stop", vllm: bool = False) -> list[bytes]:
    first = {"role": "assistant", "content": ""} if vllm else {"role": "assistant"}
    events = [_chunk(first)] + [_chunk({"content": t}) for t in texts] + [_chunk({}, finish)]
    if vllm:
        events.append(_event({"id": "chatcmpl-check", "object": "chat.completion.chunk", "created": 1700000000,
                              "model": "llava-v1.6-34b", "choices": [],
                              "usage": {"prompt_tokens": 12, "completion_tokens": len(texts),
                                        "total_tokens": 12 + len(texts)}}))
    return events + [b"data: [DONE]\n\n"]


def _split_every(pieces: list[bytes], size: int) -> list[bytes]:
    data = b"".join(pieces)
    return [data[i:i + size] for i in range(0, len(data), size)]


_CASES: list[tuple[str, list[str], Callable[[list[bytes]], list[bytes]], dict[str, Any]]] = [
    (N_("a FastChat-style stream"), ["assistant\n", "The picture", " shows a", " brown cat."], lambda p: p, {}),
    (N_("a vLLM-style stream that ends with a usage event"), ["A cup", " of coffee", " on a table."], lambda p: p,
     {"vllm": True, "finish": "length"}),
    (N_("a Chinese answer whose bytes arrive in 7-byte pieces"), ["这是", "一只", "棕色的猫。"],
     lambda p: _split_every(p, 7), {}),
    (N_("a base_url that ends with a slash, as the openai client writes it"), ["Hello", " there."], lambda p: p,
     {"slash": True}),
]

# A busy backend: its first event at once (FastChat sends the role first), then silence while the model
# reads the prompt, longer than httpx's default timeout (5 s without a byte). Run last, and only for a
# reader right in every other case: it costs its seconds.
BUSY_SILENCE = 5.5
_BUSY_CASE = N_("a busy backend, silent for 5.5 s before the first token")

# The course backend's error in the middle of an answer (FastChat 0.2.36, captured): a 200 stream whose
# event carries "text" and "error_code" instead of "choices". Returning the words before it as the answer
# would hide the failure; the course document's sample crashes on it with a KeyError that says nothing.
_ERROR_CASE = N_("an error event from the backend in the middle of the answer (FastChat's error_code 50002)")
_ERROR_TEXT = "**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE.**\n\n(CUDA out of memory)"
_ERROR_CODE = 50002


@guarded(2)
def check_raw_reader(ask_raw: Callable[[str, str, str, str], str], *, quiet: bool = False) -> Verdict:
    """Exercise 2: ``ask_raw(base_url, api_key, model, question)`` posts a streaming request with httpx
    and returns the answer's text, read from the server-sent events.

    The check runs it against a stand-in backend it starts itself (one scripted stream per case) and
    looks at the request that arrived.

    Example:
        >>> bool(check_raw_reader(lambda base_url, api_key, model, question: "", quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    if not_callable(c, ask_raw, "ask_raw"):
        return c.done()
    question, key, model = "这张图里有什么？", "dummy_key", "llava-v1.6-34b"
    for name, texts, shape, options in _CASES:
        case = _("case “{name}”").format(name=_(name))
        script = Scripted(shape(_stream(texts, **{k: v for k, v in options.items() if k != "slash"})))
        raised = Checker(2, quiet=True)  # an error of the student's code, reported unless the request explains it
        with serve_script(script) as base_url:
            given = base_url + "/" if options.get("slash") else base_url
            ok, got = call_student(raised, case, ask_raw, given, key, model, question)
        if not script.requests:
            c.problems.extend(raised.problems)
            if ok:
                c.fail(_("{case}: no request reached the base_url given to your function").format(case=case))
            continue
        request = script.requests[-1]
        body = request["body"] if isinstance(request["body"], dict) else {}
        if request["path"].endswith("//chat/completions"):
            c.fail(_("{case}: the request went to {path}, with a double slash, because base_url ({base_url}) ends "
                     "with \"/\". A real backend answers 404 there. Build the URL so that a base_url with or without "
                     "a trailing slash both work").format(case=case, path=request["path"], base_url=given))
            continue
        if request["path"] != "/v1/chat/completions":
            c.fail(_("{case}: the request went to {path}; the chat endpoint is base_url + /chat/completions")
                   .format(case=case, path=request["path"]))
            continue
        if body.get("stream") is not True:
            c.fail(_("{case}: the body did not ask for a stream; this backend only answers streaming requests")
                   .format(case=case))
            continue
        c.problems.extend(raised.problems)
        auth = {k.lower(): v for k, v in request["headers"].items()}.get("authorization", "")
        c.expect(auth == f"Bearer {key}", _("{case}: the Authorization header should carry the API key as a "
                                            "Bearer token").format(case=case))
        c.expect(body.get("model") == model, _("{case}: the body's model is {got!r}, not the model given to your "
                                               "function").format(case=case, got=body.get("model")))
        c.expect(isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0,
                 _("{case}: set max_tokens in the body: without it a real engine may generate until the context "
                   "is full").format(case=case))
        messages = body.get("messages")
        c.expect(isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict)
                 and messages[0].get("role") == "user"
                 and question in json.dumps(messages[0].get("content"), ensure_ascii=False),
                 _("{case}: the messages should hold one user message with the question").format(case=case))
        if ok:
            raw = "".join(texts)
            if not isinstance(got, str):
                c.fail(_("{case}: expected the answer as a str, got {kind}").format(case=case, kind=type(got).__name__))
            elif got not in (raw, strip_role_prefix(raw)):
                c.fail(_("{case}: the text you returned ({got!r}) is not the text of the content deltas that came")
                       .format(case=case, got=got[:60]))
    if not c.problems:
        _check_error_event(c, ask_raw, key, model, question)
    if not c.problems:
        _check_busy_backend(c, ask_raw, key, model, question)
    return c.done()


def _check_error_event(c: Checker, ask_raw: Callable[[str, str, str, str], str], key: str, model: str,
                       question: str) -> None:
    case = _("case “{name}”").format(name=_(_ERROR_CASE))
    error = _event({"text": _ERROR_TEXT, "error_code": _ERROR_CODE})
    pieces = [_chunk({"role": "assistant"}), _chunk({"content": "The image shows"}), error, b"data: [DONE]\n\n"]
    with serve_script(Scripted(pieces)) as base_url:
        try:
            got = ask_raw(base_url, key, model, question)
        except Exception as exc:  # the student's code: an error is right if it says what the backend said
            said = str(exc)
            if str(_ERROR_CODE) in said or "NETWORK ERROR" in said or "CUDA" in said:
                return
            c.fail(_("{case}: your code raised {error}, which does not say what the backend said. An event with "
                     "`error_code` and no `choices` is the backend's error: raise an error with its text and code, "
                     "e.g. `RuntimeError(f\"{{event['error_code']}}: {{event['text']}}\")`").format(
                case=case, error=describe_error(exc)))
            return
    c.fail(_("{case}: your function returned {got!r} as if it were the answer, but the backend sent an error "
             "event (`error_code` {code}) after those words. Nothing should fail silently: when an event has "
             "`error_code`, raise an error with its text and code").format(
        case=case, got=str(got)[:60], code=_ERROR_CODE))


def _is_timeout(exc: BaseException) -> bool:
    """An httpx timeout (ReadTimeout and its kin), named without importing httpx."""
    return any(k.__name__ == "TimeoutException" and k.__module__.startswith("httpx") for k in type(exc).__mro__)


def _check_busy_backend(c: Checker, ask_raw: Callable[[str, str, str, str], str], key: str, model: str,
                        question: str) -> None:
    case = _("case “{name}”").format(name=_(_BUSY_CASE))
    texts = ["A busy", " model", " answers", " at last."]
    script = Scripted(_stream(texts), silence=BUSY_SILENCE)
    with serve_script(script) as base_url:
        try:
            got = ask_raw(base_url, key, model, question)
        except Exception as exc:  # the student's code
            if _is_timeout(exc):
                c.fail(_("{case}: your reader gave up ({error}). Unless told otherwise httpx waits only 5 s for the "
                         "next bytes, and a busy model can be silent longer before its first token: give the request "
                         "a longer timeout, e.g. httpx.stream(..., timeout=60)").format(
                    case=case, error=type(exc).__name__))
            else:
                c.fail(_("{case}: your code raised {error}").format(case=case, error=describe_error(exc)))
            return
    raw = "".join(texts)
    if not isinstance(got, str) or got not in (raw, strip_role_prefix(raw)):
        c.fail(_("{case}: the text you returned ({got!r}) is not the text of the content deltas that came")
               .format(case=case, got=str(got)[:60]))
