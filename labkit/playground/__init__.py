"""The playground of lesson 06, in four modules, each with one job:

- :mod:`~labkit.playground.session`: the conversation without widgets (turns, history, budget, the
  worker thread that streams, ask / stop / clear, save), testable alone; it imports no ipywidgets;
- :mod:`~labkit.playground.saving`: writing a conversation as JSON Lines, only into regular files;
- :mod:`~labkit.playground.view`: :class:`Playground`, the widget (upload, the model's view, the
  transcript, the buttons and Shift+Enter), which drives a session;
- :mod:`~labkit.playground.modelview`: the model's view of an image (LLaVA-1.6's anyres grid), drawn.

Example:
    >>> from labkit.playground import Playground, Session
    >>> pg = Playground(samples=None)  # doctest: +SKIP
"""

from .session import Session, Turn
from .view import Playground

__all__ = ["Playground", "Session", "Turn"]
