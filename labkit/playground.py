"""An upload-and-chat widget for notebooks: :class:`Playground`.

Pick an image (upload one or choose a sample), see it beside the model's view of it (the anyres grid),
ask questions and watch the answers stream in as Markdown, with timings and a bar for the context
budget. Stop, Clear and Save (JSONL, for a lab report) are buttons; every failure is shown inside the
widget as a message with the fix, and the widget stays usable.

Streaming runs in a worker thread: a button's callback runs on the kernel's main thread, and while
it runs the kernel reads no other widget message, so a Send callback that streamed the answer itself
would leave Stop unanswered until the answer ended. Here Send starts the thread and returns at once;
Stop is then handled straight away and ends the turn, keeping what arrived.

Example:
    >>> import labkit
    >>> pg = labkit.Playground(samples=None)  # doctest: +SKIP
    >>> pg                                    # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import io
import json
import os
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .backend import client as make_client
from .config import Settings, load_settings, mask_key
from .conversation import Conversation
from .errors import (
    AuthError,
    BackendUnreachable,
    ImageError,
    LabkitError,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    StreamError,
    UsageError,
)
from .i18n import _
from .images import describe_image, encode_image
from .messages import CONTEXT_TOKENS, estimate_tokens, user
from .streaming import stream_chat

__all__ = ["Playground", "Turn"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_RENDER_EVERY = 0.1  # seconds between re-renders of the streaming answer


@dataclass(eq=False)
class Turn:
    """One question and its answer, as saved in the JSONL file."""

    question: str
    image: dict[str, Any] | None = None
    answer: str = ""
    outcome: str = "streaming"  # "stop", "length", "stopped", "error"
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

    def record(self, number: int) -> dict[str, Any]:
        """The turn as one JSON-ready dict (what :meth:`Playground.save` writes per line)."""
        live = ("stop_event", "finished", "done", "t0", "first", "parts")
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in live}
        data["image"] = dict(self.image) if self.image else None
        return {"turn": number, **data}


@dataclass
class _Picked:
    """The chosen image: where it came from, the data URL to send, and what it costs."""

    name: str
    original: tuple[int, int]
    original_bytes: int
    url: str
    sent: tuple[int, int]
    sent_bytes: int
    tokens: int
    sha256: str
    sent_yet: bool = False

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "original_size": list(self.original), "original_bytes": self.original_bytes,
                "sent_size": list(self.sent), "sent_bytes": self.sent_bytes, "image_tokens": self.tokens,
                "sha256": self.sha256}


def _is_playground_save(path: Path) -> bool:
    """Whether ``path`` holds what :meth:`Playground.save` writes (so saving again may replace it)."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f.read(8 * 1024 * 1024).splitlines() if line.strip()]
    except (OSError, ValueError):
        return False
    return all(isinstance(r, dict) and {"turn", "question", "answer"} <= r.keys() for r in rows)  # empty: nothing lost


def _error_title(exc: BaseException) -> str:
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


def _fmt(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.2f}"


class Playground:
    """Upload (or pick) an image, ask about it, and watch the answer stream in.

    Args:
        samples: a folder of sample images (default ``"images"``, the lessons' folder), a list of
            image paths, or ``None`` for none.
        settings: where to send requests; ``None`` reads :func:`labkit.load_settings` at each
            question, so the embedded practice server or the configured backend answers (the
            ``settings`` attribute may be changed later).
        client: an ``openai.OpenAI`` client to use instead of labkit's.
        system: an optional system prompt for the whole conversation.
        context_tokens: the model's context (4,096 for llava-v1.6-34b).
        request_options: extra keyword arguments for :func:`labkit.stream_chat` (e.g.
            ``{"extra_headers": {...}}``).

    Programmatic use (what the buttons do): :meth:`choose_image`, :meth:`ask`, :meth:`wait`,
    :meth:`stop`, :meth:`clear`, :meth:`save`; :attr:`turns` holds the conversation.

    Example:
        >>> pg = Playground(samples=None)           # doctest: +SKIP
        >>> pg.choose_image("images/rocket.jpg")    # doctest: +SKIP
        >>> pg.ask("What colour is it?").wait()     # doctest: +SKIP
        >>> pg.turns[-1].answer                     # doctest: +SKIP
    """

    def __init__(
        self,
        samples: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = "images",
        *,
        settings: Settings | None = None,
        client: Any = None,
        system: str | None = None,
        context_tokens: int = CONTEXT_TOKENS,
        request_options: dict[str, Any] | None = None,
        temperature: float = 0.2,
        max_tokens: int = 512,
    ) -> None:
        import ipywidgets as w

        self._w = w
        self.settings = settings
        self._client = client
        self._system = system
        self.context_tokens = context_tokens
        self.request_options = dict(request_options or {})
        self.turns: list[Turn] = []
        self._conv = Conversation(system=system, context_tokens=context_tokens)
        self._picked: _Picked | None = None
        self._lock = threading.RLock()
        self._current: Turn | None = None
        self._worker: threading.Thread | None = None
        self._saved: set[Path] = set()  # files this playground wrote: only these may be written again
        self._notice = ""

        full = w.Layout(width="100%")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description=_("Upload image"),
                                   layout=w.Layout(width="auto"))
        self.sample = w.Dropdown(options=[(_("(choose a sample photo)"), "")] + self._sample_options(samples),
                                 value="", description=_("or sample"), layout=w.Layout(width="auto"))
        self.thumbnail = w.Image(format="png", layout=w.Layout(max_width="240px", max_height="240px", display="none"))
        self.model_view = w.Image(format="png", layout=w.Layout(max_width="520px", display="none"))
        self.image_info = w.HTML("<i>" + html.escape(_("No image chosen: questions go without one.")) + "</i>")
        self.view_caption = w.HTML("")
        self.temperature = w.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.1, description="temperature",
                                         readout_format=".1f", continuous_update=False,
                                         style={"description_width": "initial"})
        self.max_tokens = w.IntSlider(value=max_tokens, min=16, max=2048, step=16, description="max_tokens",
                                      continuous_update=False, style={"description_width": "initial"})
        self.transcript = w.Output(layout=w.Layout(width="100%", min_height="60px", max_height="480px",
                                                   overflow="auto", border="1px solid #ddd", padding="4px 8px"))
        self.status = w.HTML("")
        self.budget = w.IntProgress(value=0, min=0, max=context_tokens, bar_style="success",
                                    layout=w.Layout(width="40%"))
        self.budget_label = w.HTML("")
        self.question = w.Textarea(placeholder=_("Ask about the image, e.g. What is in this picture?"),
                                   rows=2, layout=full, continuous_update=True)
        self.send_button = w.Button(description=_("Send"), button_style="primary", icon="paper-plane",
                                    tooltip=_("Send the question (Shift+Enter)"))
        self.stop_button = w.Button(description=_("Stop"), button_style="warning", icon="stop", disabled=True,
                                    tooltip=_("End the answer now and keep what arrived"))
        self.clear_button = w.Button(description=_("Clear"), icon="trash",
                                     tooltip=_("Start a new conversation"))
        self.save_name = w.Text(value="playground.jsonl", layout=w.Layout(width="220px"))
        self.save_button = w.Button(description=_("Save JSONL"), icon="save",
                                    tooltip=_("Save the conversation as JSON Lines for a lab report"))
        self.backend = w.HTML(self._backend_text())

        self.upload.observe(self._on_upload, names="value")
        self.sample.observe(self._on_sample, names="value")
        self.max_tokens.observe(lambda _change: self._update_budget(), names="value")
        self.question.observe(lambda _change: self._update_budget(), names="value")
        self.send_button.on_click(lambda _b: self._on_send())
        self.stop_button.on_click(lambda _b: self.stop())
        self.clear_button.on_click(lambda _b: self.clear())
        self.save_button.on_click(lambda _b: self._on_save())
        self._shift_enter = self._make_shift_enter()

        picker = w.VBox([self.upload, self.sample, self.thumbnail, self.image_info],
                        layout=w.Layout(flex="0 0 260px", margin="0 16px 0 0"))
        view = w.VBox([w.HTML("<b>" + html.escape(_("What the model is given")) + "</b>"), self.model_view,
                       self.view_caption], layout=w.Layout(flex="1 1 360px", max_width="540px"))
        controls = w.HBox([self.send_button, self.stop_button, self.clear_button, self.save_name,
                           self.save_button], layout=w.Layout(flex_flow="row wrap"))
        self.widget = w.VBox([
            self.backend,
            w.HBox([picker, view], layout=w.Layout(flex_flow="row wrap", justify_content="flex-start")),
            w.HBox([self.temperature, self.max_tokens], layout=w.Layout(flex_flow="row wrap")),
            self.transcript,
            self.status,
            w.HBox([self.budget, self.budget_label]),
            self.question,
            controls,
        ] + ([self._shift_enter] if self._shift_enter is not None else []), layout=w.Layout(width="100%"))
        self.widget.add_class("labkit-playground")
        self._render_transcript()
        self._update_budget()

    # ------------------------------------------------------------------ display

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<labkit.Playground: {len(self.turns)} turns, ~{self._conv.tokens()} context tokens>"

    # ------------------------------------------------------------------ settings

    def _current_settings(self) -> Settings:
        return self.settings if self.settings is not None else load_settings()

    def _backend_text(self) -> str:
        try:
            s = self._current_settings()
        except LabkitError as exc:
            return self._error_html(exc)
        where = (html.escape(s.base_url) if s.base_url
                 else html.escape(_("the embedded practice server (starts with the first question)")))
        return "<small>" + _("Backend: {where} · model {model} · key {key}").format(
            where=where, model=html.escape(s.model), key=html.escape(mask_key(s.api_key))) + "</small>"

    @staticmethod
    def _sample_options(samples: Any) -> list[tuple[str, str]]:
        if samples is None:
            return []
        if isinstance(samples, (str, os.PathLike)):
            folder = Path(samples)
            paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) \
                if folder.is_dir() else []
        else:
            paths = [Path(p) for p in samples]
        return [(p.name, str(p)) for p in paths]

    # ------------------------------------------------------------------ Shift+Enter

    def _make_shift_enter(self) -> Any:
        """A tiny front-end helper that clicks Send on Shift+Enter in the question box (anywidget);
        ``None`` where anywidget is not installed (the Send button still works)."""
        try:
            from ._keys import ShiftEnter
        except ImportError:
            return None
        helper = ShiftEnter()
        helper.on_msg(lambda _widget, content, _buffers: self._on_key(content))
        return helper

    def _on_key(self, content: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "submit":
            if isinstance(content.get("value"), str):
                self.question.value = content["value"]
            self._on_send()

    # ------------------------------------------------------------------ images

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = change.get("new") or ()
        if not files:
            return
        item = files[0]
        content = item["content"] if isinstance(item, dict) else item.content
        name = item["name"] if isinstance(item, dict) else item.name
        data = bytes(content)
        self.upload.value = ()  # forget the file (the same one may be uploaded again)
        self.sample.value = ""
        self.choose_image(data, name=name)

    def _on_sample(self, change: dict[str, Any]) -> None:
        path = change.get("new")
        if path:
            self.choose_image(path)

    def choose_image(self, source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> bool:
        """Use this image for the next question (a path or the file's bytes); returns whether it
        could be used. A damaged file is reported in the widget and the previous image is kept.

        Example:
            >>> Playground(samples=None).choose_image("images/rocket.jpg")  # doctest: +SKIP
            True
        """
        label = name or (Path(source).name if isinstance(source, (str, os.PathLike)) else _("uploaded image"))
        try:
            raw = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source)
            url = encode_image(raw)  # raises ImageError with the fix for anything unusable
            original = self._open(raw)
            info = describe_image(url)
            thumb = original.copy()
            thumb.thumbnail((240, 240))
            out = io.BytesIO()
            thumb.convert("RGB").save(out, format="PNG")
            from .modelview import anyres_plan, model_view_png

            sent_image = self._open(base64.b64decode(url.split(",", 1)[1]))
            view_png = model_view_png(sent_image)
            plan = anyres_plan(*info.size)
        except ImageError as exc:
            self._show_error(exc, context=label)
            return False
        except Exception as exc:  # anything else Pillow may raise: still a message, never a traceback
            self._show_error(ImageError(_("{name} could not be read as an image ({problem}): choose another "
                                          "file, e.g. a JPEG or PNG photo.").format(name=label, problem=exc)))
            return False
        self._picked = _Picked(label, original.size, len(raw), url, info.size, info.bytes, info.image_tokens,
                               hashlib.sha256(raw).hexdigest())
        self.thumbnail.value = out.getvalue()
        self.model_view.value = view_png
        self.thumbnail.layout.display = self.model_view.layout.display = None
        self.image_info.value = "<br>".join([
            f"<b>{html.escape(label)}</b>",
            html.escape(_("original: {width}×{height} px, {size}").format(
                width=original.width, height=original.height, size=_size(len(raw)))),
            html.escape(_("sent: {width}×{height} px, {size}").format(
                width=info.width, height=info.height, size=_size(info.bytes))),
            html.escape(_("≈ {tokens} image tokens").format(tokens=info.image_tokens)),
        ])
        self.view_caption.value = "<small>" + _(
            "Left: the 336×336 overview of the whole image. Right: the {gw}×{gh} grid of {tiles} tiles of "
            "336×336 (numbered by dots); the image fills {cw}×{ch} of it, the dark part is padding.").format(
            gw=plan.grid[0], gh=plan.grid[1], tiles=plan.tiles, cw=plan.scaled[0], ch=plan.scaled[1]) + "</small>"
        self._set_status("")
        self._update_budget()
        return True

    @staticmethod
    def _open(raw: bytes) -> Any:
        from PIL import Image, ImageOps

        img = Image.open(io.BytesIO(raw))
        img.seek(0)
        return ImageOps.exif_transpose(img)

    # ------------------------------------------------------------------ asking

    def ask(self, question: str | None = None) -> "Playground":
        """Send ``question`` (or what is typed in the box) with the chosen image, if not sent yet.

        Returns at once; the answer streams in a worker thread (see :meth:`wait`).

        Example:
            >>> Playground(samples=None).ask("Hello").wait().turns[-1].outcome  # doctest: +SKIP
            'stop'
        """
        if question is not None:
            self.question.value = question
        self._on_send()
        return self

    def wait(self, timeout: float | None = 60.0) -> "Playground":
        """Wait until the current answer has ended (for scripts and tests; in a notebook, just watch).

        Example:
            >>> Playground(samples=None).wait().busy  # doctest: +SKIP
            False
        """
        turn = self.turns[-1] if self.turns else None
        if turn is not None:
            turn.finished.wait(timeout)
        return self

    @property
    def messages(self) -> list[dict[str, Any]]:
        """What the next question is sent after: the conversation's messages (images as data URLs)."""
        with self._lock:
            return [dict(m) for m in self._conv.messages]

    @property
    def busy(self) -> bool:
        """Whether an answer is streaming now."""
        current = self._current
        return current is not None and not current.done

    def _on_send(self) -> None:
        try:
            self._send()
        except Exception as exc:  # never a traceback in the notebook
            turn = self._current
            if turn is not None and not turn.done:
                self._finish(turn, outcome="error", error=exc)
            else:
                self._show_error(exc)
                self._set_busy(False)

    def _send(self) -> None:
        with self._lock:
            if self.busy:
                self._set_status(_("An answer is still streaming: press Stop first, or wait for it."), kind="info")
                return
            text = self.question.value.strip()
            if not text:
                self._set_status(_("Type a question first, then press Send."), kind="info")
                return
            settings = self._current_settings()
            # the client (and with it the embedded practice server, if that answers) is made here, on the
            # main thread, before anything changes: a failure leaves the playground as it was
            chat_client = self._client or make_client(settings)
            base_url = str(chat_client.base_url).rstrip("/")
            if not settings.base_url:
                self.backend.value = "<small>" + html.escape(_("Backend: {where} · model {model}").format(
                    where=_("the embedded practice server at {url}").format(url=base_url),
                    model=settings.model)) + "</small>"
            picked = self._picked if self._picked is not None and not self._picked.sent_yet else None
            self._conv.messages.append(user(text, picked.url) if picked else user(text))
            removed = self._conv.fit(self.max_tokens.value)
            turn = Turn(question=text, image=picked.record() if picked else None,
                        temperature=round(float(self.temperature.value), 2), max_tokens=int(self.max_tokens.value),
                        context_tokens=self._conv.tokens(), started_at=_dt.datetime.now().astimezone().isoformat(
                            timespec="seconds"), model=settings.model, base_url=base_url)
            turn.t0 = time.perf_counter()
            if picked:
                picked.sent_yet = True
            self._notice = _("To stay within {limit} tokens, {count} older part(s) of the conversation were "
                             "removed from what is sent.").format(limit=self.context_tokens,
                                                                   count=len(removed)) if removed else ""
            self.turns.append(turn)
            self._current = turn
            self.question.value = ""
            self._set_busy(True)
            self._set_status(_("Waiting for the first token…"), kind="info")
            self._render_transcript()
            self._update_budget()
            messages = list(self._conv.messages)
            self._worker = threading.Thread(target=self._stream_turn, args=(turn, messages, settings, chat_client),
                                            name="labkit-playground", daemon=True)
            self._worker.start()

    def _stream_turn(self, turn: Turn, messages: list[dict[str, Any]], settings: Settings, chat_client: Any) -> None:
        """The worker: stream the answer, render it now and then, finish the turn however it ends."""
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
                if now - last >= _RENDER_EVERY:
                    last = now
                    self._render_live(turn)
            stopped = turn.stop_event.is_set()
            if stopped:
                stream.close()
                self._finish(turn, outcome="stopped")
            else:
                reply = stream.reply
                self._finish(turn, outcome=reply.finish_reason or "stop", text=reply.text, ttft=reply.ttft,
                             tokens=reply.completion_tokens, tps=reply.tokens_per_second)
        except StreamError as exc:
            self._finish(turn, outcome="error", text=exc.partial_text or "".join(turn.parts), error=exc)
        except Exception as exc:  # noqa: BLE001 - shown in the widget, with the fix
            self._finish(turn, outcome="error", error=exc)
        finally:
            if stream is not None:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001 - closing a broken stream has nothing left to say
                    pass

    def _finish(self, turn: Turn, *, outcome: str, text: str | None = None, ttft: float | None = None,
                tokens: int | None = None, tps: float | None = None, error: BaseException | None = None) -> None:
        with self._lock:
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
                turn.error = f"{_error_title(error)}: {error}"
            in_history = turn in self.turns
            if in_history:
                if turn.answer:
                    self._conv.add_assistant(turn.answer)
                else:  # unanswered: asking again must not send the question twice
                    if self._conv.messages and self._conv.messages[-1]["role"] == "user":
                        self._conv.messages.pop()
                    if turn.image is not None and self._picked is not None \
                            and self._picked.sha256 == turn.image.get("sha256"):
                        self._picked.sent_yet = False  # the image was not seen: send it with the retry
                    if not self.question.value:
                        self.question.value = turn.question
            self._current = None
            self._set_busy(False)
            self._render_transcript()
            self._update_budget()
            if error is not None:
                self._show_error(error)
            else:
                self._set_status(self._timing_text(turn), kind="info")
            turn.finished.set()

    def _timing_text(self, turn: Turn) -> str:
        parts = [_("first token {seconds} s").format(seconds=_fmt(turn.ttft)),
                 _("{count} tokens").format(count=turn.tokens)]
        if turn.tokens_per_second is not None:
            parts.append(_("{rate} tokens/s").format(rate=f"{turn.tokens_per_second:.1f}"))
        if turn.outcome == "stopped":
            parts.append(_("■ stopped: the text that arrived is kept"))
        elif turn.outcome == "length":
            parts.append(_("cut at max_tokens: raise the slider for a longer answer"))
        if self._notice:
            parts.append(self._notice)
        return " · ".join(parts)

    def _render_live(self, turn: Turn) -> None:
        with self._lock:
            if turn.done:
                return
            self._render_transcript()
            elapsed = time.perf_counter() - turn.t0
            ttft = None if turn.first is None else turn.first - turn.t0
            rate = (len(turn.parts) - 1) / (time.perf_counter() - turn.first) \
                if turn.first is not None and len(turn.parts) > 1 and time.perf_counter() > turn.first else None
            text = _("streaming… {elapsed} s · first token {ttft} s · {count} tokens").format(
                elapsed=f"{elapsed:.1f}", ttft=_fmt(ttft), count=len(turn.parts))
            if rate is not None:
                text += " · " + _("{rate} tokens/s").format(rate=f"{rate:.1f}")
            self._set_status(text, kind="info")

    # ------------------------------------------------------------------ stop, clear, save

    def stop(self) -> None:
        """End the answer now; the text that arrived is kept (and stays in the conversation).

        Example:
            >>> Playground(samples=None).stop()  # doctest: +SKIP
        """
        turn = self._current
        if turn is None or turn.done:
            return
        turn.stop_event.set()
        self._finish(turn, outcome="stopped")  # at once, even if the backend has gone quiet

    def clear(self) -> None:
        """Start a new conversation (the chosen image is kept and goes with the next question).

        Example:
            >>> Playground(samples=None).clear()  # doctest: +SKIP
        """
        self.stop()
        with self._lock:
            self.turns = []
            self._conv = Conversation(system=self._system, context_tokens=self.context_tokens)
            if self._picked is not None:
                self._picked.sent_yet = False
            self._notice = ""
            self._render_transcript()
            self._set_status(_("New conversation."), kind="info")
            self._update_budget()

    def records(self) -> list[dict[str, Any]]:
        """The conversation as JSON-ready dicts, one per turn (what :meth:`save` writes).

        Example:
            >>> Playground(samples=None).records()  # doctest: +SKIP
            []
        """
        with self._lock:
            return [t.record(i) for i, t in enumerate(self.turns, 1) if t.done]

    def save(self, path: str | os.PathLike[str] = "playground.jsonl") -> Path:
        """Write the finished turns as JSON Lines (one object per question and answer; the image is
        described by its sizes and SHA-256, not copied) and return the path.

        Example:
            >>> Playground(samples=None).save("report.jsonl")  # doctest: +SKIP
            PosixPath('report.jsonl')
        """
        target = Path(path)
        records = self.records()
        if target.suffix != ".jsonl":
            raise UsageError(_("{path} does not end in .jsonl: save the conversation as e.g. "
                               "'playground.jsonl', never over a notebook or another file.").format(path=target))
        if not records and target.exists() and target.stat().st_size:
            raise UsageError(_("There is nothing to save yet: ask a question first ({path} keeps what it "
                               "holds).").format(path=target))
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        target.parent.mkdir(parents=True, exist_ok=True)
        # a file this playground (or an earlier one) wrote is brought up to date; any other file is never replaced
        ours = target.resolve() in self._saved or _is_playground_save(target)
        with open(target, "w" if ours else "x", encoding="utf-8") as f:
            f.write(lines)
        self._saved.add(target.resolve())
        return target

    def _on_save(self) -> None:
        name = self.save_name.value.strip() or "playground.jsonl"
        if not self.records():
            self._set_status(html.escape(_("There is nothing to save yet: ask a question first.")), kind="error")
            return
        try:
            target = self.save(name)
        except FileExistsError:
            self._set_status(html.escape(_("{path} already exists and was not written by this playground: choose "
                                           "another file name.").format(path=name)), kind="error")
            return
        except UsageError as exc:
            self._set_status(html.escape(str(exc)), kind="error")
            return
        except OSError as exc:
            self._set_status(html.escape(_("Could not save to {path} ({problem}): choose another file name or "
                                           "folder.").format(path=name, problem=exc.strerror or exc)), kind="error")
            return
        count = len(self.records())
        self._set_status(html.escape(_("Saved {count} turn(s) to {path}.").format(count=count, path=target)),
                         kind="info")

    # ------------------------------------------------------------------ widgets' state

    def _set_busy(self, busy: bool) -> None:
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy

    def _set_status(self, text_html: str, *, kind: str = "info") -> None:
        if not text_html:
            self.status.value = ""
            return
        colour = {"info": "#555", "error": "#b00020"}.get(kind, "#555")
        self.status.value = f'<div class="labkit-status labkit-{kind}" style="color:{colour}">{text_html}</div>'

    @property
    def status_text(self) -> str:
        """The status line as plain text (what a person reads under the answer)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value.replace("<br>", "\n")))

    @staticmethod
    def _error_html(exc: BaseException) -> str:
        title = html.escape(_error_title(exc))
        detail = html.escape(str(exc) or exc.__class__.__name__)
        return (f'<div class="labkit-error" style="border-left:4px solid #b00020;padding:4px 8px;'
                f'background:#fdecee;color:#5f0010"><b>⚠ {title}</b><br>{detail}</div>')

    def _show_error(self, exc: BaseException, *, context: str | None = None) -> None:
        if not isinstance(exc, LabkitError):
            exc = LabkitError(_("Unexpected {kind}: {problem}. The playground still works; if this repeats, "
                                "tell your TA.").format(kind=exc.__class__.__name__, problem=exc))
        body = self._error_html(exc)
        if context:
            body = body.replace("</b><br>", "</b> (" + html.escape(context) + ")<br>", 1)
        self.status.value = body

    def _update_budget(self) -> None:
        used = self._conv.tokens()
        pending = self.question.value.strip()
        picked = self._picked if self._picked is not None and not self._picked.sent_yet else None
        if pending or picked:
            used += estimate_tokens([{"role": "user", "content": pending}]) + (picked.tokens if picked else 0)
        reserve = int(self.max_tokens.value)
        self.budget.value = min(used, self.context_tokens)
        share = (used + reserve) / self.context_tokens
        self.budget.bar_style = "success" if share <= 0.75 else ("warning" if share <= 1 else "danger")
        label = _("context: ~{used} of {limit} tokens used, {reserve} kept for the answer").format(
            used=used, limit=self.context_tokens, reserve=reserve)
        if share > 1:
            label += " · " + _("over budget: older parts will be dropped, or lower max_tokens")
        self.budget_label.value = f"<small>{html.escape(label)}</small>"

    def _render_transcript(self) -> None:
        parts: list[str] = []
        for turn in self.turns:
            image = " *(" + _("image: {name}").format(name=turn.image["name"]) + ")*" if turn.image else ""
            parts.append(f"**{_('You')}:** {turn.question}{image}")
            answer = turn.answer if turn.done else "".join(turn.parts)
            note = ""
            if turn.outcome == "stopped":
                note = "\n\n*" + _("■ stopped: the text that arrived is kept") + "*"
            elif turn.outcome == "error":
                note = "\n\n*" + _("⚠ the answer failed (see the message below)") + "*"
            elif turn.outcome == "length":
                note = "\n\n*" + _("(cut at max_tokens)") + "*"
            parts.append(f"**{_('Model')}:** " + (answer or ("…" if not turn.done else "")) + note)
        text = "\n\n---\n\n".join(parts) if parts else "*" + _("Your conversation will appear here.") + "*"
        self.transcript.outputs = ({"output_type": "display_data",
                                    "data": {"text/markdown": text, "text/plain": text}, "metadata": {}},)

    @property
    def transcript_text(self) -> str:
        """The conversation as the Markdown the widget shows."""
        outputs = self.transcript.outputs
        return outputs[0]["data"]["text/markdown"] if outputs else ""


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"
