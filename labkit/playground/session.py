"""The playground's conversation, without any widget: :class:`Session`.

A session keeps the turns (question, image, answer, timings), the history that is sent and its token
budget; it asks on a worker thread, stops at once (keeping what arrived), clears, and saves JSON Lines.
It imports no ipywidgets: the widget (:class:`labkit.playground.Playground`) drives one and listens to
it, and a script or a test can drive one alone.

Why a worker thread: in a notebook a button's callback runs on the kernel's main thread, and while it
runs the kernel reads no other widget message, so a Send that streamed the answer itself would leave
Stop unanswered until the answer ended. :meth:`Session.ask` starts the thread and returns at once;
:meth:`Session.stop` then ends the turn straight away, keeping what arrived, even if the backend has
gone quiet (the old request is left to end on its own).

Example:
    >>> s = Session(settings=Settings(base_url="http://127.0.0.1:8008/v1"))  # doctest: +SKIP
    >>> s.ask("What colour is it?")                                         # doctest: +SKIP
    >>> s.wait().answer                                                     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ..backend import client as make_client
from ..config import Settings, load_settings
from ..conversation import Conversation
from ..errors import (
    AuthError,
    BackendUnreachable,
    ImageError,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    StreamError,
    UsageError,
)
from ..i18n import _
from ..images import describe_image, encode_image
from ..messages import CONTEXT_TOKENS, estimate_tokens, user
from ..streaming import stream_chat
from .saving import write_jsonl

__all__ = ["Budget", "Listener", "Picked", "Session", "Turn", "error_title"]

_PROGRESS_EVERY = 0.1  # seconds between "progress" events while an answer streams

#: ``listener(event, turn)``: ``"progress"`` now and then while ``turn`` streams (from the worker
#: thread), ``"finished"`` once when it has ended (from whichever thread ended it). Called with
#: :attr:`Session.lock` held, so a progress event never comes after the turn's finish.
Listener = Callable[[str, "Turn"], None]


@dataclass(eq=False)
class Turn:
    """One question and its answer, as saved in the JSONL file.

    ``outcome`` is ``"streaming"`` until the answer ends, then ``"stop"``, ``"length"`` (cut at
    ``max_tokens``), ``"stopped"`` (Stop was pressed; the text that arrived is kept) or ``"error"``.

    Example:
        >>> Turn("Hello").record(1)["question"]
        'Hello'
    """

    question: str
    image: dict[str, Any] | None = None
    answer: str = ""
    outcome: str = "streaming"
    error: str | None = None
    ttft: float | None = None
    tokens: int = 0
    tokens_per_second: float | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    context_tokens: int = 0
    started_at: str = ""
    model: str = ""
    base_url: str = ""
    # not saved: the live state of the turn
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    done: bool = field(default=False, repr=False, compare=False)
    t0: float = field(default=0.0, repr=False, compare=False)
    first: float | None = field(default=None, repr=False, compare=False)
    parts: list[str] = field(default_factory=list, repr=False, compare=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    _LIVE = ("stop_event", "finished", "done", "t0", "first", "parts", "exception")

    def record(self, number: int, conversation: str | None = None) -> dict[str, Any]:
        """The turn as one JSON-ready dict (what :meth:`Session.save` writes per line).

        Example:
            >>> sorted(Turn("Hi").record(1, "c1"))[:3]
            ['answer', 'base_url', 'context_tokens']
        """
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._LIVE}
        data["image"] = dict(self.image) if self.image else None
        head: dict[str, Any] = {"turn": number}
        if conversation is not None:
            head["conversation"] = conversation
        return {**head, **data}

    @property
    def text_so_far(self) -> str:
        """The answer as far as it has arrived (the whole answer once the turn is done)."""
        return self.answer if self.done else "".join(self.parts)


@dataclass(eq=False)
class Picked:
    """The chosen image: where it came from, the data URL that is sent, what it costs, and two small
    pictures for a view (``preview``: at most 240 pixels; ``sent_image``: what the model is given).

    Example:
        >>> Session().prepare_image("images/rocket.jpg").tokens > 0  # doctest: +SKIP
        True
    """

    name: str
    original: tuple[int, int]
    original_bytes: int
    url: str
    sent: tuple[int, int]
    sent_bytes: int
    tokens: int
    sha256: str
    preview: Any = field(default=None, repr=False)
    sent_image: Any = field(default=None, repr=False)
    sent_yet: bool = False

    def record(self) -> dict[str, Any]:
        """What a saved turn says about its image (sizes and SHA-256; never the image itself)."""
        return {"name": self.name, "original_size": list(self.original), "original_bytes": self.original_bytes,
                "sent_size": list(self.sent), "sent_bytes": self.sent_bytes, "image_tokens": self.tokens,
                "sha256": self.sha256}


class Budget(NamedTuple):
    """The context budget: tokens the next request uses, the model's limit, and the answer's reserve."""

    used: int
    limit: int
    reserve: int

    @property
    def share(self) -> float:
        """(used + reserve) / limit: above 1, older parts will be dropped before sending."""
        return (self.used + self.reserve) / self.limit


def error_title(exc: BaseException) -> str:
    """What went wrong, in a few words, for the head of a message (the error itself says the fix).

    Example:
        >>> error_title(ImageError("x")) == _("This image cannot be used")
        True
    """
    if isinstance(exc, ImageError):
        return _("This image cannot be used")
    if isinstance(exc, AuthError):
        return _("The backend refused the API key")
    if isinstance(exc, RateLimited):
        return _("The backend is busy or limiting requests")
    if isinstance(exc, BackendUnreachable):
        return _("The backend cannot be reached")
    if isinstance(exc, ModelNotFound):
        return _("The backend does not serve this model")
    if isinstance(exc, RequestRejected):
        return _("The backend rejected the request")
    if isinstance(exc, StreamError):
        return _("The answer broke off")
    return _("Something went wrong")


def _open_image(raw: bytes) -> Any:
    from PIL import Image, ImageOps

    img = Image.open(io.BytesIO(raw))
    img.seek(0)
    return ImageOps.exif_transpose(img)


class Session:
    """A playground conversation: turns, history, budget, ask / stop / clear / save, no widgets.

    Args:
        settings: where to send requests; ``None`` reads :func:`labkit.load_settings` at each question
            (the embedded practice server, or the configured backend).
        client: an ``openai.OpenAI`` client to use instead of labkit's.
        system: an optional system prompt for the whole conversation.
        context_tokens: the model's context (4,096 for llava-v1.6-34b).
        request_options: extra keyword arguments for :func:`labkit.stream_chat`.
        listener: called as ``listener(event, turn)``; see :data:`Listener`.

    Example:
        >>> s = Session()                       # doctest: +SKIP
        >>> s.choose_image("images/rocket.jpg")  # doctest: +SKIP
        >>> s.ask("What colour is it?")          # doctest: +SKIP
        >>> s.wait().outcome                     # doctest: +SKIP
        'stop'
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        client: Any = None,
        system: str | None = None,
        context_tokens: int = CONTEXT_TOKENS,
        request_options: dict[str, Any] | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.system = system
        self.context_tokens = context_tokens
        self.request_options = dict(request_options or {})
        self.listener = listener
        self.turns: list[Turn] = []
        #: What the last question's trimming removed, in words ("" when nothing was removed).
        self.notice = ""
        #: Held while the session changes and while the listener runs; a view may hold it too.
        self.lock = threading.RLock()
        self.conversation_id = uuid.uuid4().hex
        self._conv = Conversation(system=system, context_tokens=context_tokens)
        self._picked: Picked | None = None
        self._current: Turn | None = None

    def __repr__(self) -> str:
        return f"<labkit.playground.Session: {len(self.turns)} turns, ~{self._conv.tokens()} context tokens>"

    # ------------------------------------------------------------------ state

    def current_settings(self) -> Settings:
        """The settings the next question goes with (``settings``, else read from the environment now)."""
        return self.settings if self.settings is not None else load_settings()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """What the next question is sent after: the history's messages (images as data URLs)."""
        with self.lock:
            return [dict(m) for m in self._conv.messages]

    @property
    def busy(self) -> bool:
        """Whether an answer is streaming now."""
        current = self._current
        return current is not None and not current.done

    @property
    def picked(self) -> Picked | None:
        """The chosen image, if any (it goes with the next question unless already sent)."""
        return self._picked

    def tokens(self) -> int:
        """The history's size in tokens."""
        return self._conv.tokens()

    def budget(self, pending: str = "", max_tokens: int = 512) -> Budget:
        """The budget the next question would use: the history, ``pending`` (the question being typed)
        with the chosen image if it is not sent yet, and ``max_tokens`` kept for the answer.

        Example:
            >>> Session().budget("", 512)
            Budget(used=0, limit=4096, reserve=512)
        """
        used = self._conv.tokens()
        picked = self._picked if self._picked is not None and not self._picked.sent_yet else None
        if pending.strip() or picked:
            used += estimate_tokens([{"role": "user", "content": pending.strip()}]) + (picked.tokens if picked else 0)
        return Budget(used, self.context_tokens, int(max_tokens))

    # ------------------------------------------------------------------ images

    def prepare_image(self, source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Picked:
        """Read and encode an image (a path or the file's bytes) without choosing it yet.

        Raises :class:`labkit.ImageError` with the fix for anything that is not a usable image.

        Example:
            >>> Session().prepare_image(b"not an image")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            labkit.ImageError: ...
        """
        label = name or (Path(source).name if isinstance(source, (str, os.PathLike)) else _("uploaded image"))
        try:
            raw = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source)
            url = encode_image(raw)  # raises ImageError with the fix for anything unusable
            original = _open_image(raw)
            info = describe_image(url)
            preview = original.copy()
            preview.thumbnail((240, 240))
            sent_image = _open_image(base64.b64decode(url.split(",", 1)[1]))
        except ImageError:
            raise
        except Exception as exc:  # anything else Pillow or the file system may raise: still the fix
            raise ImageError(_("{name} could not be read as an image ({problem}): choose another file, e.g. a "
                               "JPEG or PNG photo.").format(name=label, problem=exc)) from exc
        return Picked(label, original.size, len(raw), url, info.size, info.bytes, info.image_tokens,
                      hashlib.sha256(raw).hexdigest(), preview=preview.convert("RGB"), sent_image=sent_image)

    def use_image(self, picked: Picked) -> None:
        """Make ``picked`` (from :meth:`prepare_image`) the image sent with the next question."""
        with self.lock:
            self._picked = picked

    def choose_image(self, source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Picked:
        """:meth:`prepare_image`, then :meth:`use_image`; a damaged file raises and keeps the previous image.

        Example:
            >>> Session().choose_image("images/rocket.jpg").name  # doctest: +SKIP
            'rocket.jpg'
        """
        picked = self.prepare_image(source, name=name)
        self.use_image(picked)
        return picked

    # ------------------------------------------------------------------ asking

    def ask(self, question: str, *, temperature: float = 0.2, max_tokens: int = 512) -> Turn:
        """Send ``question`` with the chosen image (if not sent yet); returns its :class:`Turn` at once
        while the answer streams on a worker thread (see :meth:`wait`).

        Raises :class:`labkit.UsageError` while another answer streams (nothing is dropped: the question
        is not sent, and the streaming turn stays the last one) or for an empty question; a setting or a
        backend that cannot be used raises its own error before anything changes.

        Example:
            >>> Session().ask("   ")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            labkit.UsageError: ...
        """
        if not isinstance(question, str):
            raise UsageError(_("The question must be text (a str), not {kind}: e.g. ask('What is in this "
                               "picture?').").format(kind=type(question).__name__))
        text = question.strip()
        with self.lock:
            if self.busy:
                streaming = self._current.question if self._current is not None else ""
                raise UsageError(_("An answer (to {streaming!r}) is still streaming, so {question!r} was not sent: "
                                   "wait for it to end, or stop it, then ask again.").format(
                    streaming=streaming[:60], question=text[:60]))
            if not text:
                raise UsageError(_("The question is empty: type a question first, then send it."))
            settings = self.current_settings()
            # the client (and with it the embedded practice server, if that answers) is made here, before
            # anything changes: a failure leaves the session as it was
            chat_client = self.client or make_client(settings)
            base_url = str(chat_client.base_url).rstrip("/")
            picked = self._picked if self._picked is not None and not self._picked.sent_yet else None
            self._conv.messages.append(user(text, picked.url) if picked else user(text))
            removed = self._conv.fit(int(max_tokens))
            turn = Turn(question=text, image=picked.record() if picked else None,
                        temperature=round(float(temperature), 2), max_tokens=int(max_tokens),
                        context_tokens=self._conv.tokens(),
                        started_at=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                        model=settings.model, base_url=base_url)
            turn.t0 = time.perf_counter()
            if picked:
                picked.sent_yet = True
            self.notice = _("To stay within {limit} tokens, {count} older part(s) of the conversation were "
                            "removed from what is sent.").format(limit=self.context_tokens,
                                                                  count=len(removed)) if removed else ""
            self.turns.append(turn)
            self._current = turn
            messages = list(self._conv.messages)
            threading.Thread(target=self._stream_turn, args=(turn, messages, settings, chat_client),
                             name="labkit-playground", daemon=True).start()
            return turn

    def wait(self, timeout: float | None = 60.0) -> Turn | None:
        """Wait until the last question's answer has ended and return its turn (``None`` before any).

        Raises :class:`labkit.UsageError` if it is still streaming after ``timeout`` seconds
        (``None``: no limit), rather than hand back an unfinished answer.

        Example:
            >>> Session().wait() is None
            True
        """
        turn = self.turns[-1] if self.turns else None
        if turn is not None and not turn.finished.wait(timeout):
            raise UsageError(_("The answer to {question!r} is still streaming after {seconds} s: wait again (a "
                               "longer timeout, or timeout=None) or stop it.").format(
                question=turn.question[:60], seconds=timeout))
        return turn

    def _emit(self, event: str, turn: Turn) -> None:
        if self.listener is not None:
            self.listener(event, turn)

    def _stream_turn(self, turn: Turn, messages: list[dict[str, Any]], settings: Settings, chat_client: Any) -> None:
        """The worker: stream the answer, report progress now and then, finish the turn however it ends."""
        stream = None
        try:
            stream = stream_chat(messages, settings=settings, client=chat_client,
                                 temperature=turn.temperature, max_tokens=turn.max_tokens, **self.request_options)
            last = 0.0
            for delta in stream:
                if turn.stop_event.is_set():
                    break
                if turn.first is None:
                    turn.first = time.perf_counter()
                turn.parts.append(delta)
                now = time.perf_counter()
                if now - last >= _PROGRESS_EVERY:
                    last = now
                    with self.lock:
                        if not turn.done:
                            self._emit("progress", turn)
            if turn.stop_event.is_set():
                self._finish(turn, outcome="stopped")
            else:
                reply = stream.reply
                self._finish(turn, outcome=reply.finish_reason or "stop", text=reply.text, ttft=reply.ttft,
                             tokens=reply.completion_tokens, tps=reply.tokens_per_second)
        except StreamError as exc:
            self._finish(turn, outcome="error", text=exc.partial_text or "".join(turn.parts), error=exc)
        except Exception as exc:  # noqa: BLE001 - kept on the turn, for the view to explain
            self._finish(turn, outcome="error", error=exc)
        finally:
            if stream is not None:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001 - closing a broken stream has nothing left to say
                    pass

    def _finish(self, turn: Turn, *, outcome: str, text: str | None = None, ttft: float | None = None,
                tokens: int | None = None, tps: float | None = None, error: BaseException | None = None) -> None:
        with self.lock:
            if turn.done:
                return
            turn.done = True
            end = time.perf_counter()
            turn.answer = "".join(turn.parts) if text is None else text
            turn.outcome = outcome
            turn.ttft = ttft if ttft is not None else (None if turn.first is None else turn.first - turn.t0)
            turn.tokens = tokens if tokens is not None else len(turn.parts)
            if tps is None and turn.first is not None and turn.tokens > 1 and end > turn.first:
                tps = (turn.tokens - 1) / (end - turn.first)
            turn.tokens_per_second = None if tps is None else round(tps, 2)
            if turn.ttft is not None:
                turn.ttft = round(turn.ttft, 3)
            if error is not None:
                turn.exception = error
                turn.error = f"{error_title(error)}: {error}"
            if turn in self.turns:
                if turn.answer:
                    self._conv.add_assistant(turn.answer)
                else:  # unanswered: asking again must not send the question twice
                    if self._conv.messages and self._conv.messages[-1]["role"] == "user":
                        self._conv.messages.pop()
                    if turn.image is not None and self._picked is not None \
                            and self._picked.sha256 == turn.image.get("sha256"):
                        self._picked.sent_yet = False  # the image was not seen: send it with the retry
            if self._current is turn:
                self._current = None
            try:
                self._emit("finished", turn)
            finally:
                turn.finished.set()

    # ------------------------------------------------------------------ stop, clear, save

    def stop(self) -> None:
        """End the answer now; the text that arrived is kept (and stays in the history).

        Example:
            >>> Session().stop()
        """
        turn = self._current
        if turn is None or turn.done:
            return
        turn.stop_event.set()
        self._finish(turn, outcome="stopped")  # at once, even if the backend has gone quiet

    def clear(self) -> None:
        """Start a new conversation (a new ``conversation_id``; the chosen image goes with the next question).

        Example:
            >>> s = Session(); first = s.conversation_id; s.clear(); s.conversation_id != first
            True
        """
        self.stop()
        with self.lock:
            self.turns = []
            self._conv = Conversation(system=self.system, context_tokens=self.context_tokens)
            self.conversation_id = uuid.uuid4().hex
            if self._picked is not None:
                self._picked.sent_yet = False
            self.notice = ""

    def records(self) -> list[dict[str, Any]]:
        """The finished turns as JSON-ready dicts, one per turn (what :meth:`save` writes).

        Example:
            >>> Session().records()
            []
        """
        with self.lock:
            return [t.record(i, self.conversation_id) for i, t in enumerate(self.turns, 1) if t.done]

    def save(self, path: str | os.PathLike[str] = "playground.jsonl", *,
             if_taken: Literal["raise", "rename", "replace"] = "raise",
             within: str | os.PathLike[str] | None = None) -> Path:
        """Write the finished turns as JSON Lines and return the path written.

        Only a regular file is ever written, never through a symbolic link, a FIFO or a device; a file
        holding this conversation (an earlier save of it) is brought up to date. A file holding anything
        else (another conversation, another file, an empty file) is, by ``if_taken``: ``"raise"``: kept,
        with a :class:`labkit.UsageError`; ``"rename"``: kept, and the conversation goes to the first free
        ``NAME-2.jsonl``, ``NAME-3.jsonl``…; ``"replace"``: replaced. With ``within``, the path must lie
        inside that folder. Problems with the file system raise :class:`labkit.OutputError`.

        Example:
            >>> Session().save("report.jsonl")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            labkit.UsageError: ...
        """
        records = self.records()
        if not records:
            raise UsageError(_("There is nothing to save yet: ask a question first."))
        return write_jsonl(path, records, conversation=self.conversation_id, if_taken=if_taken, within=within)
