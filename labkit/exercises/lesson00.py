"""Self-checks of lesson 00 (setup): the model name in use, and a time-to-first-text stopwatch.

Example:
    >>> import labkit
    >>> bool(check_model_name(labkit.load_settings().model, quiet=True))
    True
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..config import load_settings
from ..i18n import _
from ._common import N_, Checker, Verdict, call_student, caller_source, guarded, literals, need, not_callable

__all__ = ["need", "check_model_name", "check_stopwatch"]


@guarded(1)
def check_model_name(model_name: object, *, quiet: bool = False) -> Verdict:
    """Exercise 1: ``model_name`` is the model the current settings send requests to.

    Example:
        >>> bool(check_model_name(None, quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    settings = load_settings()
    expected = settings.model
    assigned = _assigned(caller_source(), "model_name")
    if model_name is None and assigned is not None and _names_field(assigned, "base_url"):
        c.fail(_("model_name is None because settings.base_url is None: base_url is the backend's address (None "
                 "means the embedded practice server), not the model's name. The settings keep the model in "
                 "another field."))
    elif model_name is None and assigned is not None and not _is_none(assigned):
        c.fail(_("model_name is None: what you assigned to it holds no value. Look again at what step 2 printed: "
                 "which field of the settings names the model?"))
    elif model_name is None:
        c.fail(_("model_name is still None: assign the name of the model that the current settings use."))
    elif not isinstance(model_name, str):
        c.fail(_("model_name is a {kind}, not a string: take the model's name from the settings object.")
               .format(kind=type(model_name).__name__))
    elif model_name in (settings.base_url, str(settings.base_url or "")) or "://" in model_name:
        c.fail(_("model_name is {got!r}: that is the backend's address (base_url), not the model's name. "
                 "The settings keep the model in another field.").format(got=model_name))
    elif model_name.startswith(("settings.", "labkit.")):
        c.fail(_("model_name is the text {got!r} in quotes, not the value it names: without the quotes Python "
                 "looks the value up.").format(got=model_name))
    elif model_name != expected:
        c.fail(_("model_name is {got!r}, which is not the model in the current settings: look again at what "
                 "step 2 printed.").format(got=model_name))
    elif expected in literals(caller_source()) or (assigned is not None and _constant(assigned)):
        c.fail(_("model_name is right today, but you typed the name in as a string. The exercise asks you to take "
                 "it from the settings, so that it follows the backend when the course switches to another one."))
    return c.done()


def _assigned(source: str, name: str) -> ast.expr | None:
    """The expression last assigned to ``name`` in ``source`` (None when there is none or it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found = node.value
    return found


def _names_field(expression: ast.expr, field: str) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == field for n in ast.walk(expression))


def _constant(expression: ast.expr) -> bool:
    """Whether the expression is made of literals only (a name typed in, however it is spelt)."""
    return not any(isinstance(n, (ast.Name, ast.Attribute, ast.Call)) for n in ast.walk(expression))


def _is_none(expression: ast.expr) -> bool:
    return isinstance(expression, ast.Constant) and expression.value is None


class _FakeStream:
    """A stream whose timing the check knows: each text comes after sleeping its delay; counts what was taken."""

    def __init__(self, script: list[tuple[float, str]]) -> None:
        self.script = script
        self.taken = 0
        self.started = time.perf_counter()
        self.times: list[float] = []  # when each piece was handed out, in seconds since the call began

    def __iter__(self) -> Iterator[str]:
        for delay, text in self.script:
            time.sleep(delay)
            self.taken += 1
            self.times.append(time.perf_counter() - self.started)
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
        stream = _FakeStream(script)
        ok, got = call_student(c, case, time_to_first_text, stream)
        lasted = time.perf_counter() - stream.started  # no stopwatch inside the call can read more than this
        if not ok:
            continue
        if expected is None:
            c.expect(got is None,
                     _("{case}: expected None (no text ever came), got {got!r}").format(case=case, got=got))
            continue
        first_text = next(i for i, (_delay, text) in enumerate(script, 1) if text)
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            c.fail(_("{case}: expected a number of seconds, got {got!r}").format(case=case, got=got))
        elif got > 100:
            c.fail(_("{case}: {got:.1f} is far too large: return a duration (the difference of two clock readings) "
                     "in seconds, not a clock reading or milliseconds").format(case=case, got=got))
        elif got < expected - 0.03 and stream.taken == len(script) and first_text < len(script):
            c.fail(_("{case}: {got:.2f} s, but the first text came after {expected:.1f} s: your function read the "
                     "whole stream before it started the clock (or before it looked at the pieces), so the waiting "
                     "was over when it measured. Start the clock first, then take the pieces one by one.")
                   .format(case=case, got=got, expected=expected))
        elif got < expected - 0.03:
            c.fail(_("{case}: {got:.2f} s is too early: does your stopwatch stop at a piece that holds no text?")
                   .format(case=case, got=got))
        elif got > lasted + 0.02 or (stream.taken > first_text and got >= stream.times[first_text] - 0.01):
            # measured, not assumed: a loaded machine may hand the pieces out late, never early
            c.fail(_("{case}: {got:.2f} s is too late: the stopwatch should stop at the first piece of text, "
                     "not at the end of the stream").format(case=case, got=got))
    return c.done()
