"""The playground's widget: :class:`Playground` (lesson 06).

Pick an image (upload one or choose a sample), see it beside the model's view of it (the anyres grid),
ask questions and watch the answers stream in as Markdown, with timings and a bar for the context
budget. Stop, Clear and Save (JSONL, for a lab report) are buttons; every failure is shown inside the
widget as a message with the fix, and the widget stays usable.

The conversation itself (turns, history, budget, the worker thread, saving) is a
:class:`~labkit.playground.session.Session`; this module builds the widgets, renders the session's
turns and handles the keys and buttons.

Example:
    >>> import labkit
    >>> pg = labkit.Playground(samples=None)  # doctest: +SKIP
    >>> pg                                    # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import os
import re
import time
from pathlib import Path
from typing import Any

from ..config import Settings, mask_key
from ..display import inert_markdown
from ..errors import LabkitError, UsageError
from ..i18n import _
from ..messages import CONTEXT_TOKENS
from .modelview import anyres_plan, model_view_png
from .session import Picked, Session, Turn, error_title

__all__ = ["Playground"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def _fmt(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.2f}"


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def _shown(path: Path) -> str:
    """A saved file's path as a person reads it: relative to the working folder when inside it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except (OSError, ValueError):
        return str(path)


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
    :meth:`stop`, :meth:`clear`, :meth:`save`; :attr:`turns` holds the conversation and
    :attr:`session` the :class:`~labkit.playground.session.Session` behind it.

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

        self.session = Session(settings=settings, client=client, system=system, context_tokens=context_tokens,
                               request_options=request_options, listener=self._on_session)

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
        self.save_name = w.Text(value="playground.jsonl", layout=w.Layout(width="220px"),
                                tooltip=_("A file name inside the notebook's folder"))
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
        return f"<labkit.Playground: {len(self.turns)} turns, ~{self.session.tokens()} context tokens>"

    # ------------------------------------------------------------------ the session's state

    @property
    def turns(self) -> list[Turn]:
        """The conversation's turns (the session's)."""
        return self.session.turns

    @property
    def messages(self) -> list[dict[str, Any]]:
        """What the next question is sent after: the conversation's messages (images as data URLs)."""
        return self.session.messages

    @property
    def busy(self) -> bool:
        """Whether an answer is streaming now."""
        return self.session.busy

    @property
    def settings(self) -> Settings | None:
        """Where questions go (``None``: read from the environment at each question)."""
        return self.session.settings

    @settings.setter
    def settings(self, value: Settings | None) -> None:
        self.session.settings = value
        self.backend.value = self._backend_text()

    @property
    def request_options(self) -> dict[str, Any]:
        """Extra keyword arguments for :func:`labkit.stream_chat`."""
        return self.session.request_options

    @request_options.setter
    def request_options(self, value: dict[str, Any]) -> None:
        self.session.request_options = dict(value or {})

    @property
    def context_tokens(self) -> int:
        """The model's context, in tokens."""
        return self.session.context_tokens

    def _backend_text(self) -> str:
        try:
            s = self.session.current_settings()
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
        # the file stays in the upload's value while it is the chosen image, so the button's count says
        # (1); choosing a sample or another image empties it (and the same file can be uploaded again)
        if self._show_image(bytes(content), name, from_upload=True):
            self.sample.value = ""
        else:
            self.upload.value = ()

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
        return self._show_image(source, name, from_upload=False)

    def _show_image(self, source: str | os.PathLike[str] | bytes, name: str | None, *, from_upload: bool) -> bool:
        label = name or (Path(source).name if isinstance(source, (str, os.PathLike)) else _("uploaded image"))
        try:
            picked = self.session.prepare_image(source, name=label)
            thumb, view_png, plan = self._pictures(picked)
        except LabkitError as exc:
            self._show_error(exc, context=label)
            return False
        except Exception as exc:  # noqa: BLE001 - drawing failed: still a message, never a traceback
            self._show_error(exc, context=label)
            return False
        self.session.use_image(picked)
        if not from_upload and self.upload.value:
            self.upload.value = ()  # the uploaded file is no longer the chosen image: the count says (0)
        self.thumbnail.value = thumb
        self.model_view.value = view_png
        self.thumbnail.layout.display = self.model_view.layout.display = None
        self.image_info.value = "<br>".join([
            f"<b>{html.escape(picked.name)}</b>",
            html.escape(_("original: {width}×{height} px, {size}").format(
                width=picked.original[0], height=picked.original[1], size=_size(picked.original_bytes))),
            html.escape(_("sent: {width}×{height} px, {size}").format(
                width=picked.sent[0], height=picked.sent[1], size=_size(picked.sent_bytes))),
            html.escape(_("≈ {tokens} image tokens").format(tokens=picked.tokens)),
        ])
        self.view_caption.value = "<small>" + _(
            "Left: the 336×336 overview of the whole image. Right: the {gw}×{gh} grid of {tiles} tiles of "
            "336×336 (numbered by dots); the image fills {cw}×{ch} of it, the dark part is padding.").format(
            gw=plan.grid[0], gh=plan.grid[1], tiles=plan.tiles, cw=plan.scaled[0], ch=plan.scaled[1]) + "</small>"
        self._set_status("")
        self._update_budget()
        return True

    @staticmethod
    def _pictures(picked: Picked) -> tuple[bytes, bytes, Any]:
        out = io.BytesIO()
        picked.preview.save(out, format="PNG")
        return out.getvalue(), model_view_png(picked.sent_image), anyres_plan(*picked.sent)

    # ------------------------------------------------------------------ asking

    def ask(self, question: str | None = None) -> "Playground":
        """Send ``question`` (or what is typed in the box) with the chosen image, if not sent yet.

        Returns at once; the answer streams in a worker thread (see :meth:`wait`). While an answer
        streams, or for an empty question, it raises :class:`labkit.UsageError` and sends nothing
        (so a following ``wait()`` can never hand back an earlier question's answer); a backend that
        cannot be used raises its error too. Each is also shown in the widget.

        Example:
            >>> Playground(samples=None).ask("Hello").wait().turns[-1].outcome  # doctest: +SKIP
            'stop'
        """
        __tracebackhide__ = True
        try:
            self._send(self.question.value if question is None else question)
        except Exception as exc:
            self._report(exc)
            raise
        return self

    def wait(self, timeout: float | None = 60.0) -> "Playground":
        """Wait until the last question's answer has ended (for scripts and tests; in a notebook, just
        watch). Raises :class:`labkit.UsageError` if it still streams after ``timeout`` seconds.

        Example:
            >>> Playground(samples=None).wait().busy  # doctest: +SKIP
            False
        """
        __tracebackhide__ = True
        self.session.wait(timeout)
        return self

    def _on_send(self) -> None:
        """Send (the button, Shift+Enter): every failure is a message in the widget, never a traceback."""
        try:
            self._send(self.question.value)
        except Exception as exc:  # noqa: BLE001 - shown in the widget, with the fix
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if isinstance(exc, UsageError):  # nothing broke: say what to do
            self._set_status(html.escape(str(exc)), kind="info")
        else:
            self._show_error(exc)
        self._set_busy(self.busy)

    def _send(self, question: str) -> None:
        session = self.session
        with session.lock:  # the worker's finish waits until the widgets below are set
            embedded = not session.current_settings().base_url
            turn = session.ask(question, temperature=float(self.temperature.value),
                               max_tokens=int(self.max_tokens.value))
            if embedded:
                self.backend.value = "<small>" + html.escape(_("Backend: {where} · model {model}").format(
                    where=_("the embedded practice server at {url}").format(url=turn.base_url),
                    model=turn.model)) + "</small>"
            if self.question.value.strip() == turn.question:
                self.question.value = ""
            self._set_busy(True)
            self._set_status(_("Waiting for the first token…"), kind="info")
            self._render_transcript()
            self._update_budget()

    def _on_session(self, event: str, turn: Turn) -> None:
        """The session's listener (called with its lock held)."""
        if event == "progress":
            self._render_live(turn)
            return
        if turn in self.turns and not turn.answer and not self.question.value:
            self.question.value = turn.question  # unanswered: ready to send again
        self._set_busy(False)
        self._render_transcript()
        self._update_budget()
        if turn.exception is not None:
            self._show_error(turn.exception)
        else:
            self._set_status(self._timing_text(turn), kind="info")

    def _timing_text(self, turn: Turn) -> str:
        parts = [_("first token {seconds} s").format(seconds=_fmt(turn.ttft)),
                 _("{count} tokens").format(count=turn.tokens)]
        if turn.tokens_per_second is not None:
            parts.append(_("{rate} tokens/s").format(rate=f"{turn.tokens_per_second:.1f}"))
        if turn.outcome == "stopped":
            parts.append(_("■ stopped: the text that arrived is kept"))
        elif turn.outcome == "length":
            parts.append(_("cut at max_tokens: raise the slider for a longer answer"))
        if self.session.notice:
            parts.append(self.session.notice)
        return " · ".join(parts)

    def _render_live(self, turn: Turn) -> None:
        self._render_transcript()
        now = time.perf_counter()
        ttft = None if turn.first is None else turn.first - turn.t0
        count = len(turn.parts)
        rate = (count - 1) / (now - turn.first) if turn.first is not None and count > 1 and now > turn.first else None
        text = _("streaming… {elapsed} s · first token {ttft} s · {count} tokens").format(
            elapsed=f"{now - turn.t0:.1f}", ttft=_fmt(ttft), count=count)
        if rate is not None:
            text += " · " + _("{rate} tokens/s").format(rate=f"{rate:.1f}")
        self._set_status(text, kind="info")

    # ------------------------------------------------------------------ stop, clear, save

    def stop(self) -> None:
        """End the answer now; the text that arrived is kept (and stays in the conversation).

        Example:
            >>> Playground(samples=None).stop()  # doctest: +SKIP
        """
        self.session.stop()

    def clear(self) -> None:
        """Start a new conversation (the chosen image is kept and goes with the next question).

        Example:
            >>> Playground(samples=None).clear()  # doctest: +SKIP
        """
        self.session.clear()
        self._render_transcript()
        self._set_status(_("New conversation."), kind="info")
        self._update_budget()

    def records(self) -> list[dict[str, Any]]:
        """The conversation as JSON-ready dicts, one per finished turn (what :meth:`save` writes).

        Example:
            >>> Playground(samples=None).records()  # doctest: +SKIP
            []
        """
        return self.session.records()

    def save(self, path: str | os.PathLike[str] = "playground.jsonl", *, replace: bool = False) -> Path:
        """Write the finished turns as JSON Lines (one object per question and answer; the image is
        described by its sizes and SHA-256, not copied) and return the path.

        Any folder is allowed here (the Save button saves only inside the working folder); only a
        regular file is written, never through a link, a FIFO or a device. A file that holds this
        conversation is brought up to date; one that holds anything else (an earlier conversation, an
        empty file, another file) is kept and a :class:`labkit.UsageError` says so, unless
        ``replace=True``.

        Example:
            >>> Playground(samples=None).save("report.jsonl")  # doctest: +SKIP
            PosixPath('report.jsonl')
        """
        __tracebackhide__ = True
        return self.session.save(path, if_taken="replace" if replace else "raise")

    def _on_save(self) -> None:
        """The Save button: inside the working folder, under a new name rather than over another
        conversation; every failure a message in the widget."""
        name = self.save_name.value.strip() or "playground.jsonl"
        try:
            target = self.session.save(name, if_taken="rename", within=Path.cwd())
        except LabkitError as exc:
            self._set_status(html.escape(str(exc)), kind="error")
            return
        except OSError as exc:
            self._set_status(html.escape(_("Could not save to {path} ({problem}): choose another file name or "
                                           "folder.").format(path=name, problem=exc.strerror or exc)), kind="error")
            return
        except Exception as exc:  # noqa: BLE001 - whatever it is, a message in the widget
            self._set_status(html.escape(_("Could not save to {path} ({problem}): choose another file name or "
                                           "folder.").format(path=name, problem=f"{type(exc).__name__}: {exc}")),
                             kind="error")
            return
        shown = _shown(target)
        lines = [_("Saved {count} turn(s) to {path}.").format(count=len(self.records()), path=shown)]
        asked = (Path.cwd() / name).name
        if target.name != asked:
            lines.insert(0, _("{path} already holds something else (another conversation, another file, or an empty "
                              "file this playground did not write), so it was kept and this conversation went to a "
                              "new file; the name box now says its name.").format(path=name))
            self.save_name.value = shown
        self._set_status("<br>".join(html.escape(line) for line in lines), kind="info")

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
        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value.replace("<br>", "\n")))

    @staticmethod
    def _error_html(exc: BaseException) -> str:
        title = html.escape(error_title(exc))
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
        b = self.session.budget(self.question.value, int(self.max_tokens.value))
        self.budget.value = min(b.used, b.limit)
        self.budget.bar_style = "success" if b.share <= 0.75 else ("warning" if b.share <= 1 else "danger")
        label = _("context: ~{used} of {limit} tokens used, {reserve} kept for the answer").format(
            used=b.used, limit=b.limit, reserve=b.reserve)
        if b.share > 1:
            label += " · " + _("over budget: older parts will be dropped, or lower max_tokens")
        self.budget_label.value = f"<small>{html.escape(label)}</small>"

    def _render_transcript(self) -> None:
        parts: list[str] = []
        for turn in self.turns:
            image = " *(" + _("image: {name}").format(name=turn.image["name"]) + ")*" if turn.image else ""
            parts.append(f"**{_('You')}:** {inert_markdown(turn.question)}{image}")  # shown, never loaded
            answer = inert_markdown(turn.text_so_far)
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
