"""Showing an answer while it streams: live Markdown in Jupyter, plain text in a terminal.

Jupyter re-renders the whole Markdown on every update, so updates are throttled: a new render only
when the text has grown by a quarter since the last one (or half a second has passed), never more
than 20 a second. Rendering a long answer therefore costs O(n) in total, and the final render is
always the exact text.

An answer is shown as text, never interpreted: IPython's ``Markdown(text)`` would fetch a text that
starts with ``http`` and read a file whose name the text is, so the view publishes the text itself
(:class:`AnswerMarkdown`), with raw HTML and image syntax escaped outside code (:func:`inert_markdown`):
an answer cannot make the browser load a local file or run markup.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, TextIO

__all__ = ["AnswerMarkdown", "inert_markdown", "LiveView", "JupyterView", "TerminalView", "NullView", "in_jupyter",
           "make_view", "notice", "DisplayMode"]

DisplayMode = Literal["auto", "jupyter", "terminal", "none"]


_FENCE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
_BACKTICKS = re.compile(r"`+")
_ACTIVE = re.compile(r"(\\*)(<|!\[)")  # a '<' or '![' and the backslashes before it


def _escape_span(text: str) -> str:
    """Text outside code with every '<' and '![' made literal (an odd number of backslashes before
    one already makes it literal)."""
    return _ACTIVE.sub(lambda m: m.group(0) if len(m.group(1)) % 2 else m.group(1) + "\\" + m.group(2), text)


def _escape_line(line: str) -> str:
    """One line outside fenced code: code spans (closed on the same line) are kept as they are."""
    out: list[str] = []
    position = 0
    start = 0
    while True:
        run = _BACKTICKS.search(line, position)
        if run is None:
            break
        backslashes = len(line[:run.start()]) - len(line[:run.start()].rstrip("\\"))
        opening = run.group(0)[1:] if backslashes % 2 else run.group(0)  # '\`' is a literal backtick
        if not opening:
            position = run.end()
            continue
        closing = re.compile(r"(?<!`)" + "`" * len(opening) + r"(?!`)").search(line, run.end())
        if closing is None:
            position = run.end()  # an unclosed run is literal text
            continue
        out.append(_escape_span(line[start:run.end() - len(opening)]))
        out.append(line[run.end() - len(opening):closing.end()])  # the code span, verbatim
        position = start = closing.end()
    out.append(_escape_span(line[start:]))
    return "".join(out)


def inert_markdown(text: str) -> str:
    r"""Markdown that shows ``text`` without running any of it: raw HTML (``<img>``, ``<script>``,
    ``<iframe>``) and images (``![…](…)``) are escaped into literal text, so the browser loads
    nothing; code blocks and code spans are left as they are, and so is the rest of the Markdown.

    Where it is unsure whether something is code (a fence inside a quote), it escapes: a stray
    backslash in a rare code block is better than a file loaded by an answer.

    Example:
        >>> inert_markdown('See <img src="notes.png"> and ![x](secret.png), `a<b`')
        'See \\<img src="notes.png"> and \\![x](secret.png), `a<b`'
    """
    out: list[str] = []
    fence: tuple[int, str, int] | None = None  # indentation, character, length of the open fence
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        if fence is not None:
            indent, char, length = fence
            stripped = body.lstrip(" ")
            if stripped and len(body) - len(stripped) < indent:
                fence = None  # dedented below the fence: it ended with its list item; treat as text
            elif len(body) - len(stripped) <= 3 and stripped.startswith(char * length) \
                    and not stripped.strip(char).strip():
                fence = None
                out.append(line)
                continue
            else:
                out.append(line)
                continue
        found = _FENCE.fullmatch(body)
        if found and not (found.group(2)[0] == "`" and "`" in found.group(3)):
            fence = (len(found.group(1)), found.group(2)[0], len(found.group(2)))
            out.append(line)
            continue
        out.append(_escape_line(body) + line[len(body):])
    return "".join(out)


class AnswerMarkdown:
    """An answer for IPython's display: its Markdown is :func:`inert_markdown` of the text, its plain
    form the text itself. Unlike ``IPython.display.Markdown``, nothing in the text is taken for a URL
    to fetch or a file to read.

    Example:
        >>> AnswerMarkdown("httpx is a library").data
        'httpx is a library'
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = inert_markdown(text)

    def _repr_markdown_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return self.text


class LiveView(Protocol):
    """Something that shows a growing answer."""

    def update(self, delta: str) -> None: ...

    def finish(self, text: str, note: str = "") -> None: ...


def in_jupyter() -> bool:
    """Whether this code runs in a Jupyter kernel (not a plain terminal IPython).

    Example:
        >>> in_jupyter()
        False
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def notice(text: str) -> None:
    """Tell the person something that is news, not an error (a wait, a server started): on stdout in
    Jupyter (stderr shows as a red box there), on stderr in a terminal (stdout may be piped).

    Example:
        >>> notice("labkit: rate-limited: retrying in 5 s")  # doctest: +SKIP
    """
    print(text, file=sys.stdout if in_jupyter() else sys.stderr, flush=True)


class NullView:
    """Shows nothing (``display=False``)."""

    def update(self, delta: str) -> None:
        """Ignore the delta."""

    def finish(self, text: str, note: str = "") -> None:
        """Nothing to finish."""


class TerminalView:
    """Prints deltas as they arrive."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def update(self, delta: str) -> None:
        """Print the delta at once."""
        if delta:
            self.stream.write(delta)
            self.stream.flush()

    def finish(self, text: str, note: str = "") -> None:
        """End the line (and print the note, if any)."""
        self.stream.write(("\n" + note if note else "") + "\n")
        self.stream.flush()


class JupyterView:
    """Live Markdown in a notebook output, updated in place through a display handle.

    ``publish`` defaults to ``IPython.display.display``; a benchmark can pass its own.
    """

    def __init__(
        self,
        publish: Callable[..., Any] | None = None,
        *,
        min_interval: float = 0.05,
        max_interval: float = 0.5,
        growth: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from IPython.display import display

        self._display = publish or display
        self._handle: Any = None
        self._parts: list[str] = []
        self._length = 0
        self._shown = 0
        self._last = -1e9
        self.min_interval, self.max_interval, self.growth = min_interval, max_interval, growth
        self._clock = clock
        self.renders = 0
        self.rendered_chars = 0

    def _render(self, text: str) -> None:
        body = AnswerMarkdown(text or "…")
        if self._handle is None:
            self._handle = self._display(body, display_id=True)
        else:
            self._handle.update(body)
        self.renders += 1
        self.rendered_chars += len(text)
        self._shown = len(text)

    def update(self, delta: str) -> None:
        """Add a delta; re-render when the text grew by a quarter or half a second has passed."""
        self._parts.append(delta)
        self._length += len(delta)
        now = self._clock()
        waited = now - self._last
        if waited < self.min_interval:
            return
        if self._length >= self._shown * (1 + self.growth) + 1 or waited >= self.max_interval:
            self._render("".join(self._parts))
            self._last = now

    def finish(self, text: str, note: str = "") -> None:
        """The final render: exactly ``text`` (and the note, in italics)."""
        self._render(text + (f"\n\n*{note}*" if note else ""))


def make_view(display: "bool | DisplayMode | LiveView" = True) -> LiveView:
    """The view for ``display``: ``True``/"auto" picks Jupyter or the terminal, ``False`` shows
    nothing, and a view object (anything with ``update`` and ``finish``) is used as it is.

    Example:
        >>> type(make_view(False)).__name__
        'NullView'
    """
    if hasattr(display, "update") and hasattr(display, "finish"):
        return display  # type: ignore[return-value]
    if display is False or display == "none":
        return NullView()
    if display == "jupyter" or ((display is True or display == "auto") and in_jupyter()):
        return JupyterView()
    return TerminalView()
