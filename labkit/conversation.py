"""A multi-turn :class:`Conversation` that keeps its history and never overflows the model's context.

The budget is the model's context: what the backend reports where it says (vLLM's ``max_model_len`` in
``/v1/models``, e.g. 2,048 for ``vllm serve --max-model-len 2048``), else ``context_tokens`` (4,096 by
default, the course's llava-v1.6-34b). The history, the new question (with its image) and the answer must
all fit. labkit counts it as exactly as the backend lets it:

- vLLM reports ``usage`` (labkit always asks with ``stream_options.include_usage``): the prompt and
  answer sizes it sends are taken as they are, per message.
- FastChat sends none, so text is estimated, pessimistically (:func:`labkit.estimate_tokens`), and
  the estimate is scaled up whenever a backend's figures show it was low.
- Images cost what LLaVA-1.6's anyres formula says (:func:`labkit.estimate_image_tokens`).

Before each question the oldest images and then the oldest whole turns go until the history plus
``reserve_tokens`` fits, and the answer's ``max_tokens`` is capped at what is left. If the backend
still rejects the request as too long (FastChat's code 40303; vLLM 0.32's "maximum context length",
"Input length (N) exceeds model's maximum context length (M)" and "max_tokens=N cannot be greater than
max_model_len=M"), labkit learns the figures it states, drops the oldest turn where that helps and asks
once more. Every removal is printed once, with its reason, so a student knows what the model no longer
sees and why.

Example:
    >>> conv = Conversation(system="Answer briefly.")
    >>> conv.add_user("Hi"); conv.add_assistant("Hello!")
    >>> len(conv), conv.tokens() <= conv.context_tokens
    (3, True)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from .context import backend_context_length
from .errors import BackendError, RequestRejected, StreamError, UsageError
from .failures import error_message
from .i18n import _, ngettext
from .images import ImageSource
from .messages import CONTEXT_TOKENS, Message, assistant, estimate_tokens, image_tokens_of, user
from .streaming import Reply, chat

__all__ = ["Conversation", "CONTEXT_TOKENS", "is_context_overflow"]

_REMOVED = "[an earlier image was removed from the history to save context]"

_OVERFLOW = re.compile(
    r"maximum context length|maximum model length|longer than the maximum|context length is|"
    r"exceeds? (?:the )?(?:maximum|model|context)|too many tokens|prompt is too long|reduce the length|"
    r"cannot be greater than max_model_len",
    re.IGNORECASE)
# FastChat and vLLM: "maximum context length is 4096"; vLLM 0.32: "max_model_len=2048", "maximum context
# length (2048)" (tests/fixtures/captures/vllm-0.32-cpu-context-2048.txt).
_CONTEXT_NUMBER = re.compile(
    r"maximum (?:context|model) length (?:is|of) (\d+)|max_model_len=(\d+)|maximum context length \((\d+)\)",
    re.IGNORECASE)
_PROMPT_NUMBER = re.compile(
    r"(\d+) in the messages|has (\d+) input tokens|resulted in (\d+) tokens|prompt \(length (\d+)\)|"
    r"(\d+) input tokens|Input length \((\d+)\)", re.IGNORECASE)
#: vLLM 0.32 refuses a max_tokens above the context outright (the prompt may well fit).
_MAX_TOKENS_REFUSED = re.compile(r"max_(?:completion_)?tokens=(\d+) cannot be greater than max_model_len",
                                 re.IGNORECASE)


def _quote(text: str, limit: int = 300) -> str:
    """A backend's message on one line: whole, or cut at a word boundary with an ellipsis.

    Example:
        >>> _quote("one two three", limit=9)
        'one two…'
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(",;:") + "…"


def is_context_overflow(exc: BaseException) -> tuple[bool, int | None, int | None]:
    """Whether ``exc`` is a backend's "the request is too long" refusal, with the context size and
    the prompt's token count when its message states them.

    Matches FastChat's code 40303 and vLLM's 400 wordings, whether the refusal came before the
    stream (``RequestRejected``) or as an error event before any text (``StreamError``), and an answer
    that ended before its first word with finish_reason "length" (``StreamError``, reason "empty").

    Example:
        >>> body = {"object": "error", "code": 40303, "message": "This model's maximum context length is 4096 "
        ...         "tokens. However, your messages resulted in 4200 tokens. Please reduce the length of the messages."}
        >>> is_context_overflow(RequestRejected("rejected", status=400, body=body))
        (True, 4096, 4200)
        >>> is_context_overflow(RequestRejected("bad temperature", status=400, body={"code": 40302}))
        (False, None, None)
    """
    if not isinstance(exc, BackendError):
        return False, None, None
    if isinstance(exc, StreamError) and exc.reason == "empty":
        # FastChat counts the text only: behind it the engine may find the context already full and end
        # at once, with nothing generated and finish_reason "length"
        return exc.finish_reason == "length", None, None
    if isinstance(exc, StreamError) and (exc.reason != "backend" or exc.partial_text):
        return False, None, None
    if not isinstance(exc, (RequestRejected, StreamError)) and exc.status not in (400, 413, 422):
        return False, None, None
    message, code = error_message(exc.body)
    message = message or str(exc)
    if str(code) != "40303" and not _OVERFLOW.search(message):
        return False, None, None
    context = _CONTEXT_NUMBER.search(message)
    prompt = _PROMPT_NUMBER.search(message)
    prompt_tokens = next((int(g) for g in prompt.groups() if g), None) if prompt else None
    context_tokens = next((int(g) for g in context.groups() if g), None) if context else None
    return True, context_tokens, prompt_tokens


def _text_checked(value: object, what: str) -> str:
    __tracebackhide__ = True
    if not isinstance(value, str):
        raise UsageError(_("{what} must be text (str), got {kind}: pass it as a string.")
                          .format(what=what, kind=type(value).__name__))
    return value


def _positive(value: object, what: str) -> int:
    __tracebackhide__ = True
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(_("{what}={value} is not a positive whole number of tokens.")
                          .format(what=what, value=repr(value)))
    return value


@dataclass
class _Trimmed:
    """What one trimming removed, and why (for one notice)."""

    before: int = 0
    reserve: int = 0
    images_for_limit: int = 0
    images_for_room: int = 0
    turns: int = 0
    messages: int = 0

    def _room_parts(self) -> list[str]:
        parts = []
        if self.images_for_room:
            parts.append(ngettext("one older image", "{n} older images", self.images_for_room)
                         .format(n=self.images_for_room))
        if self.turns:
            parts.append(ngettext("the oldest question with its answer", "the {n} oldest questions and answers",
                                  self.turns).format(n=self.turns))
        if self.messages:
            parts.append(ngettext("the oldest single message", "the {n} oldest messages", self.messages)
                         .format(n=self.messages))
        return parts

    def parts(self) -> list[str]:
        """What was removed, in words (images over the per-request limit first)."""
        limit = [ngettext("one older image", "{n} older images", self.images_for_limit)
                 .format(n=self.images_for_limit)] if self.images_for_limit else []
        return limit + self._room_parts()

    def notices(self, max_images: int, context: int) -> list[str]:
        """One sentence per reason, each naming what went."""
        out = []
        if self.images_for_limit:
            out.append(ngettext(
                "removed an older image from the conversation: the backend takes at most {limit} image(s) per "
                "request.",
                "removed {n} older images from the conversation: the backend takes at most {limit} image(s) per "
                "request.", self.images_for_limit).format(n=self.images_for_limit, limit=max_images))
        room = self._room_parts()
        if room:
            out.append(_("removed {what} from the conversation: the history ({tokens} tokens) and {reserve} tokens "
                         "kept for the answer did not fit the {context}-token context.").format(
                what=_(" and ").join(room), tokens=self.before, reserve=self.reserve, context=context))
        return out


class Conversation:
    """A multi-turn chat that keeps its history and stays inside the model's context.

    ``context_tokens`` is the model's context when the backend does not say (4,096 by default); vLLM
    reports its ``--max-model-len``, which is used instead (or ``context_tokens`` if that is smaller),
    ``reserve_tokens`` the room kept for an answer when trimming, ``max_images`` how many images
    the history keeps (the course backend takes one per request). See the module's description for
    how the budget is counted and what happens when the backend still refuses.

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
        context_tokens: int | None = None,
        reserve_tokens: int = 512,
    ) -> None:
        self.messages: list[Message] = []
        if system:
            self.messages.append({"role": "system", "content": _text_checked(system, "Conversation(system)")})
        self.max_images = max_images
        #: The context the conversation keeps within: the backend's where it says (learnt at the first ask).
        self.context_tokens = CONTEXT_TOKENS if context_tokens is None else _positive(context_tokens,
                                                                                          "context_tokens")
        self._given_context = context_tokens
        self._context_learnt = False
        self.reserve_tokens = _positive(reserve_tokens, "reserve_tokens")
        if self.reserve_tokens >= self.context_tokens:
            raise UsageError(_("reserve_tokens={reserve} leaves no room in a {context}-token context: use a smaller "
                                "reserve_tokens.").format(reserve=reserve_tokens, context=context_tokens))
        self.replies: list[Reply] = []
        # Measured sizes, by message identity (the message is kept with its size, so an id is never
        # mistaken for a new message's); messages without one are estimated.
        self._measured: dict[int, tuple[Message, int]] = {}
        #: How much the backend's figures showed the text estimate to be low (never below 1).
        self.text_scale = 1.0

    # ---- history
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

    # ---- counting
    def _estimate(self, message: Message) -> int:
        images = image_tokens_of(message)
        text = estimate_tokens([message]) - images
        return math.ceil(text * self.text_scale) + images

    def message_tokens(self, message: Message) -> int:
        """One message's size in tokens: as the backend measured it, else estimated.

        Example:
            >>> Conversation().message_tokens({"role": "user", "content": "Hello there"})
            9
        """
        known = self._measured.get(id(message))
        if known is not None and known[0] is message:
            return known[1]
        return self._estimate(message)

    def tokens(self) -> int:
        """The size of the history in tokens (measured where the backend reported it, else estimated).

        Example:
            >>> Conversation().tokens()
            0
        """
        return sum(self.message_tokens(m) for m in self.messages)

    def _learn(self, sent: list[Message], prompt_tokens: int, completion: Message | None,
               completion_tokens: int | None, *, images_counted: bool = True) -> None:
        """Take the backend's figures: the measured messages keep their sizes, the rest share what is
        left of ``prompt_tokens`` in proportion to their estimates; a low estimate raises ``text_scale``."""
        unknown = [m for m in sent if not (id(m) in self._measured and self._measured[id(m)][0] is m)]
        unknown_ids = {id(m) for m in unknown}
        left = prompt_tokens - sum(self._measured[id(m)][1] for m in sent if id(m) not in unknown_ids)
        if not images_counted:  # FastChat counts the text only
            left += sum(image_tokens_of(m) for m in unknown)
        estimates = [self._estimate(m) for m in unknown]
        text_estimate = sum(e - image_tokens_of(m) for e, m in zip(estimates, unknown, strict=True))
        text_real = left - sum(image_tokens_of(m) for m in unknown)
        if text_estimate > 0 and text_real > text_estimate:
            self.text_scale = min(4.0, self.text_scale * text_real / text_estimate)
        if images_counted and unknown and left > 0:
            total = sum(estimates) or 1
            for message, estimate in zip(unknown, estimates, strict=True):
                self._measured[id(message)] = (message, max(1, round(left * estimate / total)))
        if completion is not None and completion_tokens is not None:
            words = estimate_tokens([completion])  # before scaling
            overhead = 5  # the template's end-of-turn tokens around an answer
            if words - overhead > 0 and completion_tokens > (words - overhead) * self.text_scale:
                self.text_scale = min(4.0, completion_tokens / (words - overhead))
            self._measured[id(completion)] = (completion, completion_tokens + overhead)
        live = {id(m) for m in self.messages}
        self._measured = {k: v for k, v in self._measured.items() if k in live}

    # ---- trimming
    def _first_turn(self) -> int:
        return 1 if self.messages and self.messages[0]["role"] == "system" else 0

    def _drop_oldest_turn(self) -> Literal["turn", "message"] | None:
        """Remove the oldest question with its answer(s); never the newest message."""
        start = self._first_turn()
        end = start + 1
        while end < len(self.messages) - 1 and self.messages[end]["role"] != "user":
            end += 1
        if end > len(self.messages) - 1 or len(self.messages) - start <= 1:
            return None
        dropped = self.messages[start:end]
        del self.messages[start:end]
        return "turn" if len(dropped) > 1 and dropped[0]["role"] == "user" else "message"

    def fit(self, reserve_tokens: int | None = None) -> list[str]:
        """Trim the history so that it and ``reserve_tokens`` fit the context; returns what was
        removed, in words (the newest message is never removed).

        Example:
            >>> Conversation().fit()
            []
        """
        return self._fit(reserve_tokens).parts()

    def _fit(self, reserve_tokens: int | None = None) -> _Trimmed:
        reserve = self.reserve_tokens if reserve_tokens is None else reserve_tokens
        trimmed = _Trimmed(before=self.tokens(), reserve=reserve)
        with_images = [m for m in self.messages if image_tokens_of(m)]
        # The newest message keeps its images; older ones go first while over either limit.
        while with_images and with_images[0] is not self.messages[-1] and len(with_images) > self.max_images:
            self._drop_images(with_images.pop(0))
            trimmed.images_for_limit += 1
        while with_images and with_images[0] is not self.messages[-1] and \
                self.tokens() + reserve > self.context_tokens:
            self._drop_images(with_images.pop(0))
            trimmed.images_for_room += 1
        while self.tokens() + reserve > self.context_tokens:
            what = self._drop_oldest_turn()
            if what is None:
                break
            trimmed.turns += what == "turn"
            trimmed.messages += what == "message"
        return trimmed

    def _drop_images(self, message: Message) -> None:
        self._measured.pop(id(message), None)
        parts = [p for p in message["content"] if p.get("type") != "image_url"]
        message["content"] = parts + [{"type": "text", "text": _REMOVED}]

    def _note(self, text: str) -> None:
        print(_("labkit: {note}").format(note=text), flush=True)

    def _answer_budget(self, asked: int | None, *, announce: bool = True) -> int:
        """``max_tokens`` for the next answer: what is left of the context, or less if asked."""
        __tracebackhide__ = True
        left = self.context_tokens - self.tokens()
        if left < 1:
            raise RequestRejected(_(
                "The question alone needs about {need} tokens, more than the model's {context}-token context "
                "holds even with the whole history removed: shorten the question or send a smaller image "
                "(labkit.encode_image sends what the model sees).")
                .format(need=self.tokens(), context=self.context_tokens))
        if asked is not None and asked > left and announce:
            self._note(_("max_tokens={asked} does not fit what is left of the {context}-token context; this answer "
                         "may use at most {left} tokens.").format(asked=asked, context=self.context_tokens, left=left))
        return left if asked is None else min(asked, left)

    # ---- asking
    def ask(self, text: str, *images: ImageSource, image: ImageSource | None = None,
            **chat_options: Any) -> Reply:
        """Ask the next question (with optional images); the answer is added to the history.

        Images may be given positionally or as ``image=`` (as with :func:`labkit.chat`).
        ``chat_options`` go to :func:`labkit.chat` (``max_tokens``, ``temperature``, ``display`` …);
        ``max_tokens`` is capped at what is left of the context. An answer stopped early (Ctrl-C, the
        stop button) is kept in the history as far as it arrived, as the playground keeps it; a failed
        question leaves the history as it was.

        Example:
            >>> conv = Conversation()
            >>> reply = conv.ask("What is in this picture?", "photo.jpg", display=False)  # doctest: +SKIP
        """
        __tracebackhide__ = True
        if isinstance(text, str) and not text.strip() and not images and image is None:
            raise UsageError(_("The question is empty: ask something, e.g. conv.ask('What colour is it?')."))
        asked = chat_options.pop("max_tokens", None)
        before = [(m, m.get("content")) for m in self.messages]
        self.add_user(text, *images, *([image] if image is not None else []))
        try:
            self._learn_context(chat_options)
            trimmed = self._fit(min(asked or self.reserve_tokens, self.reserve_tokens))
            for note in trimmed.notices(self.max_images, self.context_tokens):
                self._note(note)
            reply = self._send(asked, chat_options)
        except BaseException:
            # unanswered: the history goes back to what it was (asking again must not send the question
            # twice, and turns trimmed for a question that never got an answer are not lost)
            self.messages[:] = [m for m, _content in before]
            for message, content in before:
                message["content"] = content
            raise
        return reply

    def _learn_context(self, chat_options: dict[str, Any]) -> None:
        """Once: the backend's context length where it reports one (vLLM's max_model_len)."""
        if self._context_learnt:
            return
        self._context_learnt = True
        learnt = backend_context_length(chat_options.get("settings"), client=chat_options.get("client"))
        if learnt is None:
            return
        context = min(learnt, self._given_context) if self._given_context else learnt
        if context != self.context_tokens:
            self._note(_("the backend's context is {context} tokens (it reports max_model_len={learnt}): the "
                         "conversation keeps within that.").format(context=context, learnt=learnt))
            self.context_tokens = context
        if self.reserve_tokens >= self.context_tokens:
            self.reserve_tokens = max(1, self.context_tokens // 4)

    def _send(self, asked: int | None, chat_options: dict[str, Any]) -> Reply:
        __tracebackhide__ = True
        for attempt in (1, 2):
            sent = list(self.messages)
            try:
                reply = chat(sent, max_tokens=self._answer_budget(asked, announce=attempt == 1), **chat_options)
            except BackendError as exc:
                overflow, context, prompt = is_context_overflow(exc)
                if not overflow or attempt == 2:
                    raise
                self._recover(exc, sent, context, prompt)
                continue
            answer = assistant(reply.text)
            self.messages.append(answer)
            self.replies.append(reply)
            usage = reply.usage or {}
            if "prompt_tokens" in usage:
                self._learn(sent, usage["prompt_tokens"], answer, usage.get("completion_tokens"))
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _recover(self, exc: BackendError, sent: list[Message], context: int | None, prompt: int | None) -> None:
        """After a "too long" refusal: learn from its figures, drop the oldest turn(s) where that helps, say so."""
        __tracebackhide__ = True
        said = _quote(error_message(exc.body)[0] or str(exc))
        if context is not None and context < self.context_tokens:
            self.context_tokens = context  # the backend's real limit is smaller than assumed
            if self.reserve_tokens >= context:
                self.reserve_tokens = max(1, context // 4)
        if _MAX_TOKENS_REFUSED.search(said):
            # only max_tokens was too big: the next request asks for what the learnt context leaves
            self._note(_("the backend refused max_tokens as larger than its {context}-token context ({said}); asked "
                         "again within it.").format(context=self.context_tokens, said=said))
            return
        if prompt is not None:
            fastchat = str(error_message(exc.body)[1]) == "40303"
            self._learn(sent, prompt, None, None, images_counted=not fastchat)
        dropped = _Trimmed(before=self.tokens(), reserve=self.reserve_tokens)
        must_drop = prompt is None  # without the backend's figure, only dropping a turn is sure to help
        while must_drop or self.tokens() + self.reserve_tokens > self.context_tokens:
            what = self._drop_oldest_turn()
            if what is None:
                break
            dropped.turns += what == "turn"
            dropped.messages += what == "message"
            must_drop = False
        if not dropped.parts() and (prompt is None or prompt >= self.context_tokens):
            raise RequestRejected(_(
                "The backend says the question is too long for its context ({said}), and there is no earlier turn "
                "left to drop: shorten the question or send a smaller image.").format(said=said),
                status=getattr(exc, "status", None), body=exc.body) from exc
        if dropped.parts():
            self._note(_("the backend refused the conversation as too long ({said}); removed {what} and asked again.")
                       .format(said=said, what=_(" and ").join(dropped.parts())))
        # else: the backend's exact count fits once max_tokens is capped by it; asking again is enough

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"Conversation({len(self.messages)} messages, ~{self.tokens()} tokens)"
