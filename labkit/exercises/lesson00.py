"""Self-checks of lesson 00 (setup): the model name in use, and a time-to-first-text stopwatch.

Example:
    >>> import labkit
    >>> bool(check_model_name(labkit.load_settings().model, quiet=True))
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ..config import load_settings
from ..i18n import _
from ._common import N_, Checker, Verdict, call_student, guarded, need, not_callable

__all__ = ["need", "check_model_name", "check_stopwatch"]


@guarded(1)
def check_model_name(model_name: object, *, quiet: bool = False) -> Verdict:
    """Exercise 1: ``model_name`` is the model the current settings send requests to.

    Example:
        >>> bool(check_model_name(None, quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    expected = load_settings().model
    if model_name is None:
        c.fail(_("model_name is still None: assign the name of the model that the current settings use."))
    elif not isinstance(model_name, str):
        c.fail(_("model_name is a {kind}, not a string: take the model's name from the settings object.")
               .format(kind=type(model_name).__name__))
    elif model_name != expected:
        c.fail(_("model_name is {got!r}, which is not the model in the current settings: look again at what "
                 "step 2 printed.").format(got=model_name))
    return c.done()


def _fake_stream(script: list[tuple[float, str]]) -> Iterator[str]:
    """Yield each text after sleeping its delay: a stream whose timing the check knows."""
    for delay, text in script:
        time.sleep(delay)
        yield text


# (case name, the stream's script, expected seconds or None)
_CASES: list[tuple[str, list[tuple[float, str]], float | None]] = [
    (N_("text after 0.2 s, then more text"), [(0.2, "The"), (0.1, " cat"), (0.1, " is"), (0.1, " brown.")], 0.2),
    (N_("an empty piece first, the text 0.2 s later"), [(0.0, ""), (0.2, "Hi"), (0.2, "!")], 0.2),
    (N_("a Chinese answer after 0.1 s"), [(0.1, "猫"), (0.1, "是棕色的。")], 0.1),
    (N_("a stream with no text at all"), [(0.05, ""), (0.05, "")], None),
]


@guarded(2)
def check_stopwatch(time_to_first_text: Callable[[Any], float | None], *, quiet: bool = False) -> Verdict:
    """Exercise 2: ``time_to_first_text(stream)`` returns the seconds until the first non-empty piece.

    The check feeds it streams whose timing it controls (an empty piece first, a Chinese answer, no
    text at all) and compares with the true delay.

    Example:
        >>> bool(check_stopwatch(lambda stream: 0.2, quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    if not_callable(c, time_to_first_text, "time_to_first_text"):
        return c.done()
    for name, script, expected in _CASES:
        case = _("case “{name}”").format(name=_(name))
        ok, got = call_student(c, case, time_to_first_text, _fake_stream(script))
        if not ok:
            continue
        if expected is None:
            c.expect(got is None,
                     _("{case}: expected None (no text ever came), got {got!r}").format(case=case, got=got))
            continue
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            c.fail(_("{case}: expected a number of seconds, got {got!r}").format(case=case, got=got))
        elif got > 100:
            c.fail(_("{case}: {got:.1f} is far too large: return a duration (the difference of two clock readings) "
                     "in seconds, not a clock reading or milliseconds").format(case=case, got=got))
        elif got < expected - 0.03:
            c.fail(_("{case}: {got:.2f} s is too early: does your stopwatch stop at a piece that holds no text?")
                   .format(case=case, got=got))
        elif got > expected + 0.15:
            c.fail(_("{case}: {got:.2f} s is too late: the stopwatch should stop at the first piece of text, "
                     "not at the end of the stream").format(case=case, got=got))
    return c.done()
