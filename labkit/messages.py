"""Building chat messages, and a multi-turn :class:`Conversation` that stays inside the context.

Example:
    >>> from labkit.messages import user, system
    >>> [system("Be brief.")["role"], user("Hello")["content"]]
    ['system', 'Hello']
"""

from __future__ import annotations

# `__tracebackhide__ = True` in a function makes IPython leave its frame out of tracebacks, so a
# student sees their own line and labkit's message, not labkit's internals.

import functools
import math
import re
from typing import TYPE_CHECKING, Any

from .errors import LabkitError
from .images import ImageSource, Resize, describe_image, encode_image

if TYPE_CHECKING:
    from .streaming import Reply

__all__ = ["Message", "user", "system", "assistant", "Conversation", "estimate_tokens"]

Message = dict[str, Any]
CONTEXT_TOKENS = 4096
_REMOVED = "[an earlier image was removed from the history to save context]"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")


def _text(value: object, what: str) -> str:
    __tracebackhide__ = True
    if not isinstance(value, str):
        raise LabkitError(f"{what} must be text (str), got {type(value).__name__}: pass the question as a string.")
    return value


def user(text: str, *images: ImageSource, resize: Resize = "llava") -> Message:
    """A user message: text, then any images (paths, PIL images, arrays, bytes, URLs).

    Images are encoded with :func:`labkit.encode_image` (upright, downscaled to what the model sees).

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
    return describe_image(url).image_tokens if url.startswith("data:") else 2928


def estimate_tokens(messages: list[Message]) -> int:
    """A rough token count of messages: text (≈4 characters or 1 Chinese character a token), 4 per
    message for the chat template, and LLaVA-1.6's real cost for each image.

    Example:
        >>> estimate_tokens([user("Hello there")])
        7
    """
    total = 0
    for message in messages:
        total += 4
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]
        for text in texts:
            cjk = len(_CJK.findall(text))
            total += cjk + math.ceil((len(text) - cjk) / 4)
        for url in _image_urls(message):
            total += _image_tokens(url)
    return total


class Conversation:
    """A multi-turn chat that keeps its history and stays inside the model's context.

    The course backend takes one image per request and 4,096 tokens in all, so before each question
    the oldest images are replaced by a short note (keeping at most ``max_images``), and if the
    history is still too long, the oldest turns are dropped. Each removal is printed.

    Example:
        >>> conv = Conversation(system="Answer briefly.")
        >>> conv.add_user("Hi")
        >>> conv.add_assistant("Hello!")
        >>> len(conv.messages)
        3
    """

    def __init__(
        self,
        system: str | None = None,
        *,
        max_images: int = 1,
        context_tokens: int = CONTEXT_TOKENS,
        reserve_tokens: int = 512,
    ) -> None:
        self.messages: list[Message] = []
        if system:
            self.messages.append({"role": "system", "content": _text(system, "Conversation(system)")})
        self.max_images = max_images
        self.context_tokens = context_tokens
        self.reserve_tokens = reserve_tokens
        self.replies: list[Reply] = []

    def add_user(self, text: str, *images: ImageSource) -> None:
        """Append a user message (sent with the next :meth:`ask`, or by you).

        Example:
            >>> Conversation().add_user("Hello")
        """
        self.messages.append(user(text, *images))

    def add_assistant(self, text: str) -> None:
        """Append an assistant answer to the history.

        Example:
            >>> Conversation().add_assistant("Hello!")
        """
        self.messages.append(assistant(text))

    def tokens(self) -> int:
        """The estimated size of the history in tokens.

        Example:
            >>> Conversation().tokens()
            0
        """
        return estimate_tokens(self.messages)

    def fit(self, reserve_tokens: int | None = None) -> list[str]:
        """Trim the history to fit; returns what was removed, in words.

        Example:
            >>> Conversation().fit()
            []
        """
        reserve = self.reserve_tokens if reserve_tokens is None else reserve_tokens
        removed: list[str] = []
        with_images = [m for m in self.messages if _image_urls(m)]
        # The newest message keeps its images; older ones go first while over either limit.
        while with_images and with_images[0] is not self.messages[-1] and (
            len(with_images) > self.max_images or self.tokens() + reserve > self.context_tokens
        ):
            self._drop_images(with_images.pop(0))
            removed.append("an older image")
        start = 1 if self.messages and self.messages[0]["role"] == "system" else 0
        while self.tokens() + reserve > self.context_tokens and len(self.messages) - start > 1:
            # drop the oldest turn whole (a question and its answer), so history still starts with a user
            turn = 2 if len(self.messages) - start > 2 and self.messages[start + 1]["role"] == "assistant" else 1
            del self.messages[start:start + turn]
            removed.append("the oldest question and answer" if turn == 2 else "the oldest message")
        return removed

    @staticmethod
    def _drop_images(message: Message) -> None:
        parts = [p for p in message["content"] if p.get("type") != "image_url"]
        message["content"] = parts + [{"type": "text", "text": _REMOVED}]

    def ask(self, text: str, *images: ImageSource, image: ImageSource | None = None,
            **chat_options: Any) -> "Reply":
        """Ask the next question (with optional images); the answer is added to the history.

        Images may be given positionally or as ``image=`` (as with :func:`labkit.chat`).
        ``chat_options`` go to :func:`labkit.chat` (``max_tokens``, ``temperature``, ``display`` …).

        Example:
            >>> conv = Conversation()
            >>> reply = conv.ask("What is in this picture?", "photo.jpg", display=False)  # doctest: +SKIP
        """
        __tracebackhide__ = True
        from .streaming import chat

        self.add_user(text, *images, *([image] if image is not None else []))
        for note in self.fit(chat_options.get("max_tokens") or self.reserve_tokens):
            print(f"labkit: removed {note} from the conversation to stay within {self.context_tokens} tokens.")
        try:
            reply = chat(self.messages, **chat_options)
        except BaseException:
            self.messages.pop()  # unanswered: asking again must not send the question twice
            raise
        self.add_assistant(reply.text)
        self.replies.append(reply)
        return reply

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"Conversation({len(self.messages)} messages, ~{self.tokens()} tokens)"
