"""Validation of a chat-completion request, with messages a student can act on.

Each failure is a :class:`Problem` that the dialect turns into its own error shape. FastChat's
checks and codes are followed (40001 validation, 40301 model, 40302 range, 40303 context); where
FastChat answers bad input with a 500 (an unknown role) the practice server answers 400. Types are
checked first, then the model, then the ranges in FastChat's ``check_requests`` order (top_k 0 is
40302); each field is read as the server's pydantic reads it (FastChat 0.2.36's pydantic 1 coerces
``"0.5"``, ``5.5`` and ``true`` and drops unknown fields; vLLM's pydantic 2 takes numeric strings).
Behind FastChat's front a bad or extra image reaches the worker only once the stream began (a 50001
event), and a value the worker fails on (temperature null or NaN, a lone surrogate) drops the stream.
vLLM takes any role, an assistant-last conversation and ``n`` > 1, and words its checks as vLLM 0.32.
Each remaining difference is listed in README.md's deviations table (tests/conformance.py checks it).
The practice server streams at most ``MAX_CHOICES`` choices (the real servers: no limit).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .brain import Prompt, count_text_tokens, request_fingerprint
from .config import PracticeConfig
from .vision import ImageDecodeError, ImageFacts, analyse, decode_data_url, image_tokens

__all__ = ["Problem", "ChatRequest", "parse_request"]

ROLES = ("system", "user", "assistant")
#: The temperature when a request sends none: vLLM's sampling default, FastChat 0.2.36's request default.
DEFAULT_TEMPERATURE = {"vllm": 1.0, "fastchat": 0.7}
TEMPLATE_TOKENS_PER_MESSAGE = 4


@dataclass
class Problem(Exception):
    """A request the server refuses: HTTP status, FastChat code, vLLM type and param."""

    status: int
    message: str
    code: int = 40001
    kind: str = "BadRequestError"
    param: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    """A validated request."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int
    prompt: Prompt
    prompt_tokens: int
    #: How many answers to stream, one after another (FastChat's ``n``; vLLM's dialect allows 1).
    n: int = 1
    #: Strings that end the answer before them (``finish_reason`` "stop").
    stop: tuple[str, ...] = ()
    #: FastChat dialect: what the worker fails on after the stream began (a bad image: a mid-stream
    #: ``error_code`` 50001 event), or why it crashes and the connection drops (``drop``).
    stream_error: str | None = None
    drop: str | None = None


# A lone UTF-16 surrogate can only come from a \\uD8xx…\\uDFxx escape or from UTF-8 bytes ED A0–BF (json.loads
# decodes bytes with "surrogatepass"): look for the structure's strings only when the body has one.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The brain reads at most this much of the question and system text (the whole is still counted).
_BRAIN_CHARS = 4096


def _surrogate_problem(body: Any, dialect: str) -> Problem | None:
    """The first string (or key) holding a lone surrogate, as the error the dialect would answer."""
    stack: list[tuple[Any, str]] = [(body, "body")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, f"{where} key"))
                stack.append((item, f"{where}.{key}" if isinstance(key, str) and key.isidentifier() else where))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            m = _SURROGATE.search(value)
            if m is None:
                continue
            position = m.start()
            # Python's own words, which vLLM relays when its tokenizer meets the string.
            reason = (f"'utf-8' codec can't encode character {m.group()!r} in position {position}: "
                      "surrogates not allowed")
            if dialect == "vllm":
                return Problem(400, reason, param=where.split(".")[0].split("[")[0] if where != "body" else None)
            where = where[5:] if where.startswith("body.") else where
            return Problem(400, f"{where} is not valid Unicode ({reason}): a lone UTF-16 surrogate is half of an "
                                "emoji or a cut string; send the text as UTF-8, e.g. with json.dumps",
                           param=where.split(".")[0].split("[")[0])
    return None


def _number(body: dict[str, Any], name: str, integer: bool = False) -> float | None:
    """The field's value when it has the right type (checked before anything else, as pydantic does)."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str | bool):  # pydantic 2's lax mode (vLLM): "5", "0.5", true
        try:
            value = float(value) if not isinstance(value, bool) else int(value)
        except ValueError:
            raise Problem(400, f"'{name}' must be a number, got {value!r}", param=name) from None
    finite_float = isinstance(value, float) and math.isfinite(value)
    if not integer and isinstance(value, float) and not math.isfinite(value):  # vLLM's own check, after the types
        return value
    if not (isinstance(value, int) or finite_float):
        kind = "an integer" if integer else "a finite number"
        raise Problem(400, f"'{name}' must be {kind}, got {value!r}", param=name)
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise Problem(400, f"'{name}' must be an integer, got {value!r}", param=name)
    return int(value) if integer else value


class _Invalid(Exception):
    """A value pydantic 1 cannot coerce to the field's type."""


def _pyd_int(value: Any) -> int:
    """pydantic 1's ``int``: ints, bools, floats (truncated) and integer strings."""
    if isinstance(value, int):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise _Invalid from None


def _pyd_float(value: Any) -> float:
    """pydantic 1's ``float``: numbers, bools and numeric strings (``"nan"``/``"inf"`` too)."""
    if isinstance(value, dict | list):
        raise _Invalid
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise _Invalid from None


def _pyd_str(value: Any) -> str:
    """pydantic 1's ``str``: strings, and numbers as their text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Invalid


#: FastChat 0.2.36's ChatCompletionRequest: field → pydantic 1 type (None is allowed for all but model).
_FASTCHAT_FIELDS: dict[str, Any] = {
    "temperature": _pyd_float, "top_p": _pyd_float, "top_k": _pyd_int, "n": _pyd_int, "max_tokens": _pyd_int,
    "presence_penalty": _pyd_float, "frequency_penalty": _pyd_float, "user": _pyd_str,
}


def _fastchat_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The body as FastChat's pydantic 1 model reads it: types coerced (``"0.5"`` → 0.5, ``5.5`` → 5,
    ``true`` → 1), unknown fields dropped; a value it cannot coerce is a 40001."""
    out = {k: v for k, v in body.items() if k in ("model", "messages", "stream", "stop") or k in _FASTCHAT_FIELDS}
    if out.get("model", "") is None:
        raise Problem(400, "'model' is null: name the model, e.g. 'llava-v1.6-34b'", param="model")
    if "model" in out:
        try:
            out["model"] = _pyd_str(out["model"])
        except _Invalid:
            raise Problem(400, f"'model' must be a string, got {out['model']!r}", param="model") from None
    for name, coerce in _FASTCHAT_FIELDS.items():
        if out.get(name) is not None:
            try:
                out[name] = coerce(out[name])
            except _Invalid:
                kind = {_pyd_int: "an integer", _pyd_float: "a number", _pyd_str: "a string"}[coerce]
                raise Problem(400, f"'{name}' must be {kind}, got {out[name]!r}", param=name) from None
    messages = out.get("messages")
    if isinstance(messages, str | int | float) and not isinstance(messages, bool):
        # FastChat takes a string as the whole prompt, as it is.
        out["messages"] = [{"role": "user", "content": _pyd_str(messages)}]
    elif isinstance(messages, list):
        fixed = []
        for message in messages:
            if isinstance(message, dict):
                message = {k: (_pyd_str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
                           for k, v in message.items()}
                if any(v is None or isinstance(v, bool) for v in message.values()):
                    raise Problem(400, f"messages[{len(fixed)}] has a null or true/false value: each message's "
                                       "'role' and 'content' must be text", param="messages")
            fixed.append(message)
        out["messages"] = fixed
    return out


def _vllm_ranges(body: dict[str, Any], max_tokens: float | None, temperature: float | None,
                 top_p: float | None, n: float | None, stop: tuple[str, ...]) -> None:
    """vLLM 0.32's SamplingParams checks, in its order and words."""
    def refuse(message: str, name: str, value: Any = None, suffix: bool = True) -> Problem:
        return Problem(400, message + (f" (parameter={name}, value={value})" if suffix else ""), param=name)

    if n is not None and n < 1:
        raise refuse(f"n must be at least 1, got {int(n)}.", "n", suffix=False)
    if n is not None and n > 1 and temperature is not None and temperature < 1e-5:
        raise refuse(f"n must be 1 when using greedy sampling, got {int(n)}.", "n", suffix=False)
    for name in ("presence_penalty", "frequency_penalty"):
        value = _number(body, name)
        if value is not None and not -2 <= value <= 2:
            raise refuse(f"{name} must be in [-2, 2], got {float(value)}.", name, suffix=False)
    if temperature is not None and not math.isfinite(temperature):
        raise refuse(f"temperature must be a finite number, got {temperature}.", "temperature", temperature)
    if temperature is not None and not 0 <= temperature <= 2:
        raise refuse(f"temperature must be in [0, 2], got {float(temperature)}.", "temperature", float(temperature))
    if top_p is not None and not 0 < top_p <= 1:
        raise refuse(f"top_p must be in (0, 1], got {float(top_p)}.", "top_p", float(top_p))
    if max_tokens is not None and max_tokens < 1:
        raise refuse(f"max_tokens must be at least 1, got {int(max_tokens)}.", "max_tokens", int(max_tokens))
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise Problem(400, f"'user' must be a string, got {user!r}", param="user")
    raw_stop = body.get("stop")
    if "" in (raw_stop if isinstance(raw_stop, list) else [raw_stop]):
        raise Problem(400, "stop cannot contain an empty string.", param="stop")


def _in_range(value: float | None, name: str, lo: float, hi: float | None, dialect: str,
              integer: bool = False) -> None:
    """FastChat's check_requests wording (vLLM's where the dialect is vLLM) for a value out of range."""
    if value is None:
        return
    shown = str(int(value)) if integer else repr(float(value))  # FastChat (pydantic) shows floats as 3.0
    if dialect == "vllm" and value < lo:
        raise Problem(400, f"{name} must be at least {lo:g}, got {shown}. (parameter={name}, value={shown})",
                      40302, param=name)
    if dialect == "vllm" and hi is not None and value > hi:
        raise Problem(400, f"{name} must be at most {hi:g}, got {shown}. (parameter={name}, value={shown})",
                      40302, param=name)
    if value < lo:
        raise Problem(400, f"{shown} is less than the minimum of {lo:g} - '{name}'", 40302, param=name)
    if hi is not None and value > hi:
        raise Problem(400, f"{shown} is greater than the maximum of {hi:g} - '{name}'", 40302, param=name)


#: What pydantic reads as true or false for a boolean field (both real servers validate with pydantic).
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _stream_flag(value: Any) -> bool:
    """``stream`` as pydantic reads it: ``"yes"``, ``1`` and ``"true"`` mean true; null means false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Problem(400, f"'stream' must be true or false, got {value!r}", param="stream")


def _stop_strings(value: Any, dialect: str) -> tuple[str, ...]:
    """``stop`` as a tuple of strings (FastChat's pydantic 1 also takes numbers, as their text)."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    stops: list[str] = []
    for item in items:
        if dialect == "fastchat" and isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise Problem(400, f"'stop' must be a string or a list of strings, got {value!r}", param="stop")
        stops.append(item)
    return tuple(s for s in stops if s)


#: The practice server streams at most this many choices (FastChat itself sets no limit).
MAX_CHOICES = 16


def _content_parts(content: Any, where: str, fastchat: bool = False) -> tuple[list[str], list[str]]:
    """Texts and image URLs of one message's content."""
    if isinstance(content, str):
        return [content], []
    if not isinstance(content, list):
        raise Problem(400, f"{where}.content must be a string or a list of parts, got {type(content).__name__}",
                      param="messages")
    texts: list[str] = []
    urls: list[str] = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise Problem(400, f"{here} must be an object like {{'type': 'text', 'text': '…'}}", param="messages")
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise Problem(400, f"{here} has type 'text' but no string 'text' field", param="messages")
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(image, str):
                raise Problem(400, f"{here}.image_url must be an object {{'url': 'data:image/…'}}, not a string",
                              param="messages")
            if not isinstance(url, str):
                raise Problem(400, f"{here} has type 'image_url' but no 'image_url': {{'url': 'data:image/…'}}",
                              param="messages")
            urls.append(url)
        elif not fastchat:  # FastChat reads the text and image_url parts and passes over the rest
            raise Problem(400, f"{here}.type is {kind!r}: use 'text' or 'image_url' (this model reads text and "
                               "images only)", param="messages")
    return texts, urls


def _messages(messages: Any, config: PracticeConfig) -> tuple[list[tuple[str, list[str]]], list[str]]:
    if isinstance(messages, list) and not messages and config.dialect == "vllm":
        raise Problem(400, "Cannot apply chat template to an empty conversation. Provide at least one message.")
    if not isinstance(messages, list):
        raise Problem(400, "'messages' must be a non-empty list of {'role': …, 'content': …} objects", param="messages")
    texts_by_role: list[tuple[str, list[str]]] = []
    urls: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Problem(400, f"{where} must be an object with 'role' and 'content'", param="messages")
        role = message.get("role")
        vllm = config.dialect == "vllm"
        if vllm and isinstance(role, str):  # vLLM's chat template takes any role
            role = role if role in ROLES else "user"
            message = {"content": "", **message}
        if role not in ROLES:
            raise Problem(400, f"{where}.role is {role!r}: use one of 'system', 'user', 'assistant'", param="messages")
        if "content" not in message:
            raise Problem(400, f"{where} has no 'content'", param="messages")
        texts, found = _content_parts(message["content"], where, config.dialect == "fastchat")
        if found and role != "user" and not vllm:
            raise Problem(400, f"{where} is a {role} message with an image: only user messages may carry images",
                          param="messages")
        texts_by_role.append((role, texts))
        urls += found
    # FastChat answers an empty conversation, or one ending with the assistant, as any other.
    if len(urls) > config.max_images and config.dialect == "vllm":
        raise Problem(400, f"At most {config.max_images} image(s) may be provided in one prompt. (parameter=image)",
                      param="image")  # vLLM 0.32's words
    return texts_by_role, urls


def parse_request(raw: bytes, config: PracticeConfig) -> ChatRequest:
    """Validate a request body, raising :class:`Problem` for the first thing wrong with it.

    Example:
        >>> req = parse_request(b'{"model": "llava-v1.6-34b", "stream": true, '
        ...                     b'"messages": [{"role": "user", "content": "Hi"}]}', PracticeConfig())
        >>> req.prompt.question, req.prompt_tokens
        ('Hi', 5)
    """
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:  # FastAPI's own answer (both real servers) when the body is not text
        raise Problem(400, "There was an error parsing the body", kind="detail") from None
    except (ValueError, RecursionError) as exc:  # bad JSON, absurd numbers or nesting
        raise Problem(400, f"The request body is not valid JSON ({str(exc)[:80]}): send a JSON object") from None
    if not isinstance(body, dict):
        raise Problem(400, "The request body must be a JSON object with 'model' and 'messages'")
    drop: str | None = None
    if (b"\\ud" in raw or b"\\uD" in raw or b"\xed" in raw) and _MAYBE_SURROGATE.search(raw):
        problem = _surrogate_problem(body, config.dialect)
        if problem is not None and (config.dialect == "vllm" or problem.param == "model"):
            raise problem  # (FastChat would echo the model name in its 40301 and fail to encode it: a 500)
        if problem is not None and problem.param in ("messages", "stop", "user"):
            drop = problem.message  # FastChat passes it on; the stream breaks when it is encoded
        # (an unknown field FastChat drops unread)
    if config.dialect == "vllm":  # vLLM serves its one model when a request names none
        if body.get("model") in (None, ""):
            body = {**body, "model": config.model}
        if not isinstance(body["model"], str):
            raise Problem(400, f"'model' must be a string, got {body['model']!r}", param="model")
    missing = [k for k in ("model", "messages") if k not in body]
    if missing:
        raise Problem(400, f"The request has no {' or '.join(repr(m) for m in missing)} field: every chat request "
                           "needs 'model' and 'messages'", param=missing[0])
    # Types first (pydantic validates the whole body before the server looks at it), then the model,
    # then the ranges in FastChat's check_requests order.
    if config.dialect == "fastchat":
        body = _fastchat_fields(body)
        if "n" in body and body["n"] is None:  # range(None) in FastChat's stream generator
            drop = drop or "'n' is null: FastChat's front fails on it after the stream began (send 1, or leave it out)"
            body.pop("n")
        for name in ("temperature", "top_p"):
            value = body.get(name, 0.0)
            if value is None or math.isnan(value):
                # FastChat passes it to the worker, whose float(...) or sampler fails after the stream began.
                drop = drop or (f"'{name}' is {value}: FastChat passes it to the model worker, which fails on it "
                                "after the stream began (send a number, or leave the field out)")
                body[name] = None
    stream = _stream_flag(body.get("stream", False))
    if config.dialect == "fastchat":  # coerced above; infinities reach the range checks, as in FastChat
        max_tokens, n, top_k = body.get("max_tokens"), body.get("n"), body.get("top_k")
        temperature, top_p = body.get("temperature"), body.get("top_p")
    else:  # vLLM takes max_completion_tokens (OpenAI's newer name) before max_tokens
        max_tokens = _number(body, "max_completion_tokens", integer=True)
        max_tokens = _number(body, "max_tokens", integer=True) if max_tokens is None else max_tokens
        n = _number(body, "n", integer=True)
        temperature = _number(body, "temperature")
        top_p = _number(body, "top_p")
        top_k = _number(body, "top_k", integer=True)
    stop = _stop_strings(body.get("stop"), config.dialect)
    seed = body.get("seed")  # FastChat has no seed and no stream_options: its model drops them
    if isinstance(seed, str) and seed.strip().lstrip("+-").isdigit():  # pydantic 2's lax mode: "42" is 42
        seed = int(seed)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or abs(seed) >= 2**63):
        raise Problem(400, f"'seed' must be an integer, got {seed!r}", param="seed")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise Problem(400, "'stream_options' must be an object such as {'include_usage': true}", param="stream_options")
    include_usage = bool(options and options.get("include_usage"))

    model = body["model"]
    if model != config.model:
        if config.dialect == "vllm":
            raise Problem(404, f"The model `{model}` does not exist. Valid aliases: {config.model}.", 40301,
                          "NotFoundError", "model")
        raise Problem(400, f"Only {config.model} allowed now, your model {model}", 40301, param="model")

    if not stream and not config.allow_non_stream:
        raise Problem(400, "This backend only answers streaming calls: pass stream=True to "
                           "client.chat.completions.create(...) and read the chunks", param="stream")

    if config.dialect == "vllm":
        _vllm_ranges(body, max_tokens, temperature, top_p, n, stop)
    else:
        _in_range(max_tokens, "max_tokens", 1, None, "fastchat", integer=True)
        _in_range(n, "n", 1, None, "fastchat", integer=True)
        _in_range(temperature, "temperature", 0, 2, "fastchat")
        _in_range(top_p, "top_p", 0, 1, "fastchat")
        if top_k is not None and -1 < top_k < 1:
            raise Problem(400, f"{top_k} is out of Range. Either set top_k to -1 or >=1.", 40302, param="top_k")
    if n is not None and n > MAX_CHOICES:
        raise Problem(400, f"n is {n}: the practice server streams at most {MAX_CHOICES} choices; ask for "
                           "fewer", 40302, param="n")
    texts_by_role, urls = _messages(body["messages"], config)
    facts: list[ImageFacts] = []
    digests: list[str] = []
    stream_error: str | None = None
    if len(urls) > config.max_images:  # FastChat's front passes them on: the engine behind refuses them
        stream_error = (f"At most {config.max_images} image(s) may be provided in one prompt; this request has "
                        f"{len(urls)}. Send one image per request, or drop older images from the history")
        urls = []
    for k, url in enumerate(urls):
        try:
            data = decode_data_url(url)
            facts.append(analyse(data))
        except ImageDecodeError as exc:
            if config.dialect == "vllm":
                raise Problem(400, f"Image {k + 1}: {exc}", param="image") from None
            # Behind FastChat's front the worker meets the image after the stream began: a 50001 event.
            stream_error, facts, digests = f"Image {k + 1}: {exc}", [], []
            break
        digests.append(hashlib.blake2b(data, digest_size=16).hexdigest())

    text_tokens = sum(TEMPLATE_TOKENS_PER_MESSAGE + sum(count_text_tokens(t) for t in texts)
                      for _, texts in texts_by_role)
    # vLLM counts the prompt as the model sees it: each image expands to its anyres feature tokens.
    prompt_tokens = text_tokens + sum(image_tokens(f.width, f.height) for f in facts)
    limit = config.max_model_len
    room = limit - prompt_tokens  # what the engine can still generate, images included
    if config.dialect == "vllm":
        # vLLM 0.32: max_tokens above the context is refused; a prompt over it is refused (the text as
        # its tokenizer, cut at the context + 1, counts it; then with the images); otherwise max_tokens is
        # capped at what the prompt leaves.
        if max_tokens is not None and max_tokens > limit:
            raise Problem(400, f"max_tokens={int(max_tokens)} cannot be greater than max_model_len={limit}. Please "
                               f"request fewer output tokens. (parameter=max_tokens, value={int(max_tokens)})",
                          param="max_tokens")
        if text_tokens > limit:
            raise Problem(400, f"This model's maximum context length is {limit} tokens. However, your prompt "
                               f"contains at least {limit + 1} input tokens, which exceeds this limit even without any "
                               f"output tokens. Please reduce the length of the input prompt. "
                               f"(parameter=input_tokens, value={limit + 1})", param="input_tokens")
        if prompt_tokens > limit:
            raise Problem(400, f"Input length ({prompt_tokens}) exceeds model's maximum context length ({limit}).")
        answer_limit = min(int(max_tokens), room) if max_tokens is not None else room
    else:
        # FastChat 0.2.36's check_length counts the prompt's text only (the worker's count_token) and
        # caps max_tokens by what that leaves; 40303 only when nothing is left.
        if text_tokens >= limit:
            raise Problem(400, f"This model's maximum context length is {limit} tokens. However, your messages "
                               f"resulted in {text_tokens} tokens. Please reduce the length of the messages.",
                          40303, param="messages")
        answer_limit = min(int(max_tokens) if max_tokens is not None else 1024 * 1024, limit - text_tokens)
        # The engine behind it counts the images too: it stops when the real context is full, and a
        # prompt already over it ends at once with nothing generated and finish_reason "length"
        # (vLLM ignores an over-long prompt with a warning; FastChat relays the empty answer).
        answer_limit = max(0, min(answer_limit, room))

    question = next((" ".join(p[:_BRAIN_CHARS] for p in t)[:_BRAIN_CHARS]
                     for r, t in reversed(texts_by_role) if r == "user"), "")
    system = " ".join(" ".join(p[:_BRAIN_CHARS] for p in t) for r, t in texts_by_role if r == "system")[:_BRAIN_CHARS]
    turn = sum(1 for r, _ in texts_by_role if r == "user")
    return ChatRequest(
        model=model,
        stream=stream,
        include_usage=include_usage,
        max_tokens=answer_limit,
        prompt=Prompt(question, tuple(facts), turn, system, request_fingerprint(body, texts_by_role, digests),
                      temperature=float(DEFAULT_TEMPERATURE[config.dialect] if temperature is None else temperature),
                      top_p=float(top_p if top_p is not None else 1.0), seeded=seed is not None),
        prompt_tokens=prompt_tokens,
        n=int(n) if n is not None else 1,
        stop=stop,
        stream_error=stream_error,
        drop=drop,
    )
