"""Validation of a chat-completion request, with messages a student can act on.

Each failure is a :class:`Problem` that the dialect turns into its own error shape. FastChat's
checks and codes are followed (40001 validation, 40301 model, 40302 range, 40303 context); where
FastChat answers bad input with a 500 (an unknown role) the practice server answers 400. Types are
checked first, then the model, then the ranges in FastChat's ``check_requests`` order (top_k 0 is
40302); ``stream`` and ``stop`` are read as pydantic reads them (``"yes"`` is true, a number is text).
FastChat answers an empty conversation and one ending with the assistant; vLLM's dialect refuses them,
and allows n=1 only. The practice server streams at most ``MAX_CHOICES`` choices (FastChat: no limit).
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
    finite_float = isinstance(value, float) and math.isfinite(value)
    if isinstance(value, bool) or not (isinstance(value, int) or finite_float):
        kind = "an integer" if integer else "a finite number"
        raise Problem(400, f"'{name}' must be {kind}, got {value!r}", param=name)
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise Problem(400, f"'{name}' must be an integer, got {value!r}", param=name)
    return int(value) if integer else value


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


def _content_parts(content: Any, where: str) -> tuple[list[str], list[str]]:
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
            if not isinstance(url, str):
                raise Problem(400, f"{here} has type 'image_url' but no 'image_url': {{'url': 'data:image/…'}}",
                              param="messages")
            urls.append(url)
        else:
            raise Problem(400, f"{here}.type is {kind!r}: use 'text' or 'image_url' (this model reads text and "
                               "images only)", param="messages")
    return texts, urls


def _messages(messages: Any, config: PracticeConfig) -> tuple[list[tuple[str, list[str]]], list[str]]:
    if not isinstance(messages, list) or (not messages and config.dialect == "vllm"):
        raise Problem(400, "'messages' must be a non-empty list of {'role': …, 'content': …} objects", param="messages")
    texts_by_role: list[tuple[str, list[str]]] = []
    urls: list[str] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise Problem(400, f"{where} must be an object with 'role' and 'content'", param="messages")
        role = message.get("role")
        if role not in ROLES:
            raise Problem(400, f"{where}.role is {role!r}: use one of 'system', 'user', 'assistant'", param="messages")
        if "content" not in message:
            raise Problem(400, f"{where} has no 'content'", param="messages")
        texts, found = _content_parts(message["content"], where)
        if found and role != "user":
            raise Problem(400, f"{where} is a {role} message with an image: only user messages may carry images",
                          param="messages")
        texts_by_role.append((role, texts))
        urls += found
    # FastChat answers an empty conversation, or one ending with the assistant, as any other.
    if config.dialect == "vllm" and texts_by_role[-1][0] == "assistant":
        raise Problem(400, "The last message is from the assistant: end with a user message to get an answer",
                      param="messages")
    if len(urls) > config.max_images:
        raise Problem(400, f"At most {config.max_images} image(s) may be provided in one prompt; this request has "
                           f"{len(urls)}. Send one image per request, or drop older images from the history",
                      param="image")
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
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd numbers or nesting
        raise Problem(400, f"The request body is not valid JSON ({str(exc)[:80]}): send a JSON object") from None
    if not isinstance(body, dict):
        raise Problem(400, "The request body must be a JSON object with 'model' and 'messages'")
    if (b"\\ud" in raw or b"\\uD" in raw or b"\xed" in raw) and _MAYBE_SURROGATE.search(raw):
        problem = _surrogate_problem(body, config.dialect)
        if problem is not None:
            raise problem
    missing = [k for k in ("model", "messages") if k not in body]
    if missing:
        raise Problem(400, f"The request has no {' or '.join(repr(m) for m in missing)} field: every chat request "
                           "needs 'model' and 'messages'", param=missing[0])
    # Types first (pydantic validates the whole body before the server looks at it), then the model,
    # then the ranges in FastChat's check_requests order.
    stream = _stream_flag(body.get("stream", False))
    max_tokens = _number(body, "max_tokens", integer=True)
    n = _number(body, "n", integer=True)
    temperature = _number(body, "temperature")
    top_p = _number(body, "top_p")
    top_k = _number(body, "top_k", integer=True)
    stop = _stop_strings(body.get("stop"), config.dialect)
    seed = body.get("seed")
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
        _in_range(max_tokens, "max_tokens", 1, None, "vllm", integer=True)
        _in_range(temperature, "temperature", 0, 2, "vllm")
        _in_range(top_p, "top_p", 0, 1, "vllm")
        _in_range(n, "n", 1, 1, "vllm", integer=True)
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
    for k, url in enumerate(urls):
        try:
            data = decode_data_url(url)
            facts.append(analyse(data))
        except ImageDecodeError as exc:
            raise Problem(400, f"Image {k + 1}: {exc}", param="image") from None
        digests.append(hashlib.blake2b(data, digest_size=16).hexdigest())

    text_tokens = sum(TEMPLATE_TOKENS_PER_MESSAGE + sum(count_text_tokens(t) for t in texts)
                      for _, texts in texts_by_role)
    # vLLM counts the prompt as the model sees it: each image expands to its anyres feature tokens.
    prompt_tokens = text_tokens + sum(image_tokens(f.width, f.height) for f in facts)
    limit = config.max_model_len
    room = limit - prompt_tokens  # what the engine can still generate, images included
    if config.dialect == "vllm":
        # vLLM's _validate_input: the prompt must leave room, max_tokens must fit; absent, it fills the rest.
        if max_tokens is None and prompt_tokens >= limit:
            raise Problem(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                               f"{prompt_tokens} tokens in the messages, Please reduce the length of the messages.")
        if max_tokens is not None and prompt_tokens + max_tokens > limit:
            raise Problem(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                               f"{prompt_tokens + int(max_tokens)} tokens ({prompt_tokens} in the messages, "
                               f"{int(max_tokens)} in the completion). Please reduce the length of the messages or "
                               "completion.")
        answer_limit = int(max_tokens) if max_tokens is not None else room
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
    )
