"""Showing an answer while it streams: live Markdown in Jupyter, plain text in a terminal.

Jupyter re-renders the whole Markdown on every update, so updates are throttled: a new render only
when the text has grown by a quarter since the last one (or half a second has passed), never more
than 20 a second. Rendering a long answer therefore costs O(n) in total, and the final render is
always the exact text.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, TextIO

__all__ = ["LiveView", "JupyterView", "TerminalView", "NullView", "in_jupyter", "make_view", "notice", "DisplayMode"]

DisplayMode = Literal["auto", "jupyter", "terminal", "none"]


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
        from IPython.display import Markdown, display

        self._markdown = Markdown
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
        body = self._markdown(text or "…")
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
