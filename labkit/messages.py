"""Building chat messages: pure data, nothing here sends a request.

Example:
    >>> from labkit.messages import user, system
    >>> [system("Be brief.")["role"], user("Hello")["content"]]
    ['system', 'Hello']

A multi-turn conversation is :class:`labkit.Conversation` (:mod:`labkit.conversation`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .errors import UsageError
from .i18n import _
from .images import ImageSource, Resize, describe_image, encode_image

__all__ = ["Message", "CONTEXT_TOKENS", "user", "system", "assistant", "estimate_tokens", "image_tokens_of"]

Message = dict[str, Any]
#: The context of the course's model (vLLM's ``--max-model-len`` for llava-v1.6-34b), in tokens.
CONTEXT_TOKENS = 4096
#: Tokens the chat template adds around each message (``<|im_start|>user\n`` … ``<|im_end|>\n``).
TEMPLATE_TOKENS = 5
#: An image part given as an http(s) URL: labkit cannot see its size, so it counts the most an image costs.
UNKNOWN_IMAGE_TOKENS = 2928


def _text(value: object, what: str) -> str:
    __tracebackhide__ = True
    if not isinstance(value, str):
        raise UsageError(_("{what} must be text (str), got {kind}: pass the question as a string.")
                          .format(what=what, kind=type(value).__name__))
    return value


def user(text: str, *images: ImageSource, resize: Resize = "llava") -> Message:
    """A user message: text, then any images (paths, PIL images, arrays, bytes, URLs).

    Images are encoded with :func:`labkit.encode_image` (upright, at the size the model uses).

    Example:
        >>> from PIL import Image
        >>> m = user("What colour is this?", Image.new("RGB", (64, 64), "blue"))
        >>> [part["type"] for part in m["content"]]
        ['text', 'image_url']
    """
    __tracebackhide__ = True
    text = _text(text, "user(text)")
    images = tuple(i for i in images if i is not None)
    if not images:
        return {"role": "user", "content": text}
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in images:
        content.append({"type": "image_url", "image_url": {"url": encode_image(image, resize=resize)}})
    return {"role": "user", "content": content}


def system(text: str) -> Message:
    """A system message (instructions that hold for the whole conversation).

    Example:
        >>> system("Answer in one sentence.")
        {'role': 'system', 'content': 'Answer in one sentence.'}
    """
    return {"role": "system", "content": _text(text, "system(text)")}


def assistant(text: str) -> Message:
    """An assistant message (a previous answer, for multi-turn history).

    Example:
        >>> assistant("It is a cat.")
        {'role': 'assistant', 'content': 'It is a cat.'}
    """
    return {"role": "assistant", "content": _text(text, "assistant(text)")}


def _image_urls(message: Message) -> list[str]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [p["image_url"]["url"] for p in content if isinstance(p, dict) and p.get("type") == "image_url"]


@functools.lru_cache(maxsize=64)
def _image_tokens(url: str) -> int:
    """An image part's token cost (cached: a conversation re-counts its history before each question)."""
    return describe_image(url).image_tokens if url.startswith("data:") else UNKNOWN_IMAGE_TOKENS


def image_tokens_of(message: Message) -> int:
    """The tokens a message's images cost (LLaVA-1.6's anyres formula, at the size sent).

    Example:
        >>> from PIL import Image
        >>> image_tokens_of(user("What is it?", Image.new("RGB", (672, 672), "red")))
        2928
    """
    return sum(_image_tokens(url) for url in _image_urls(message))


def _text_tokens(text: str) -> int:
    # Pessimistic on purpose: a real answer of 1,249 tokens was once estimated as 761 at ~4 characters
    # a token. Every character outside ASCII (Chinese, emoji, accents, U+FFFD) counts as a whole token,
    # ASCII text as one token per 3 characters.
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return (len(text) - ascii_chars) + math.ceil(ascii_chars / 3)


def estimate_tokens(messages: list[Message]) -> int:
    """A pessimistic token count of messages: text (3 ASCII characters or 1 other character a token),
    5 per message for the chat template, and LLaVA-1.6's real cost for each image.

    Example:
        >>> estimate_tokens([user("Hello there")])
        9
        >>> estimate_tokens([user("你好")])
        7
    """
    total = 0
    for message in messages:
        total += TEMPLATE_TOKENS
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]
        for text in texts:
            total += _text_tokens(text if isinstance(text, str) else str(text))
        total += image_tokens_of(message)
    return total

