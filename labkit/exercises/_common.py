"""What every self-check shares: the verdict printed as ✅/❌, and a clear error for a cell run too early."""

from __future__ import annotations

import ast
import functools
import linecache
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import LabkitError
from ..i18n import _

__all__ = ["Checker", "N_", "StepNotRun", "Verdict", "call_student", "caller_source", "guarded", "literals", "need"]


def N_(message: str) -> str:
    """Mark a message for translation where it is defined; ``_()`` translates it where it is shown.

    Example:
        >>> N_("an empty stream")
        'an empty stream'
    """
    return message


class StepNotRun(LabkitError, NameError):
    """An exercise cell ran before the cells it needs (for example right after a kernel restart)."""


def need(namespace: Mapping[str, object], *names: str, step: str) -> None:
    """Raise :class:`StepNotRun` naming ``step`` unless every name in ``names`` is defined.

    Example:
        >>> need({"records": {}}, "records", step="step 4")
        >>> need({}, "records", step="step 4")
        Traceback (most recent call last):
        ...
        labkit.exercises._common.StepNotRun: Run step 4 first: records is not defined yet. ...
    """
    missing = [name for name in names if name not in namespace]
    if missing:
        raise StepNotRun(_(
            "Run {step} first: {names} is not defined yet. A kernel restart forgets every variable: "
            "run the cells above this one again (Run > Run All Above Selected Cell), then this cell."
        ).format(step=step, names=", ".join(missing)))


class Verdict:
    """The result of one self-check: true when it passed; ``problems`` lists what failed.

    Jupyter shows nothing for it (the check has already printed its verdict).

    Example:
        >>> bool(Verdict("Exercise 1", [])), Verdict("Exercise 1", ["case 2: wrong"]).problems
        (True, ['case 2: wrong'])
    """

    def __init__(self, exercise: str, problems: list[str]) -> None:
        self.exercise = exercise
        self.problems = problems

    def __bool__(self) -> bool:
        return not self.problems

    @property
    def ok(self) -> bool:
        """Whether the check passed.

        Example:
            >>> Verdict("Exercise 1", []).ok
            True
        """
        return not self.problems

    def __repr__(self) -> str:
        return f"Verdict({self.exercise!r}, ok={self.ok})"

    def _ipython_display_(self) -> None:  # the verdict is already printed
        pass


class Checker:
    """Collects the problems of one exercise and prints the verdict.

    Example:
        >>> c = Checker(1, quiet=True)
        >>> c.expect(1 + 1 == 2, "arithmetic")
        True
        >>> bool(c.done())
        True
    """

    def __init__(self, number: int, *, quiet: bool = False) -> None:
        self.exercise = _("Exercise {number}").format(number=number)
        self.problems: list[str] = []
        self.quiet = quiet

    def fail(self, problem: str) -> None:
        """Record one problem (a sentence for the student).

        Example:
            >>> c = Checker(1, quiet=True); c.fail("case 1: empty"); c.problems
            ['case 1: empty']
        """
        self.problems.append(problem)

    def expect(self, condition: bool, problem: str) -> bool:
        """Record ``problem`` unless ``condition`` holds; returns ``condition``.

        Example:
            >>> Checker(1, quiet=True).expect(False, "no")
            False
        """
        if not condition:
            self.fail(problem)
        return condition

    def done(self) -> Verdict:
        """Print ✅ or ❌ with every problem, and return the :class:`Verdict`.

        Example:
            >>> Checker(2).done()
            ✅ Exercise 2: passed.
            Verdict('Exercise 2', ok=True)
        """
        if not self.quiet:
            if self.problems:
                print("❌ " + _("{exercise}: not yet. What failed:").format(exercise=self.exercise))
                for problem in self.problems:
                    print("   • " + problem)
            else:
                print("✅ " + _("{exercise}: passed.").format(exercise=self.exercise))
        return Verdict(self.exercise, list(self.problems))


def describe_error(exc: BaseException) -> str:
    """``TypeError: message`` for an error raised by a student's code.

    Example:
        >>> describe_error(ValueError("bad"))
        'ValueError: bad'
    """
    return f"{type(exc).__name__}: {exc}"


def call_student(checker: Checker, case: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Call the student's ``func``; an exception becomes a problem naming ``case``.

    Example:
        >>> c = Checker(1, quiet=True)
        >>> call_student(c, "case 1", int, "x")[0], len(c.problems)
        (False, 1)
    """
    try:
        return True, func(*args, **kwargs)
    except Exception as exc:  # the student's code: report, never crash the check
        checker.fail(_("{case}: your code raised {error}").format(case=case, error=describe_error(exc)))
        return False, None


def not_callable(checker: Checker, func: object, name: str) -> bool:
    """Record a problem when ``func`` is not a function; returns True when it is not.

    Example:
        >>> not_callable(Checker(1, quiet=True), None, "my_cleaner")
        True
    """
    if callable(func):
        return False
    checker.fail(_("{name} is not a function yet (it is {kind}): define it with def {name}(...):")
                 .format(name=name, kind=type(func).__name__))
    return True


def guarded(number: int) -> Callable[[Callable[..., Verdict]], Callable[..., Verdict]]:
    """Decorate a check so that an answer of a shape it cannot read becomes a ❌, never a traceback.

    Example:
        >>> @guarded(3)
        ... def check_x(value, *, quiet=False):
        ...     return Checker(3, quiet=quiet).done() if value + 1 else None
        >>> bool(check_x("text", quiet=True))
        False
    """
    def wrap(check: Callable[..., Verdict]) -> Callable[..., Verdict]:
        @functools.wraps(check)
        def guarded_check(*args: Any, quiet: bool = False, **kwargs: Any) -> Verdict:
            try:
                return check(*args, quiet=quiet, **kwargs)
            except Exception as exc:  # the answer's shape surprised the check: say so
                c = Checker(number, quiet=quiet)
                c.fail(_("the check could not read your answer ({error}): compare its type and shape with what "
                         "the exercise asks for").format(error=describe_error(exc)))
                return c.done()
        return guarded_check
    return wrap


def caller_source() -> str:
    """The source of the code that called the check (a notebook cell, whose text IPython keeps in
    ``linecache``), or ``""`` where it cannot be read. Lets a check see *how* a value was made.

    Example:
        >>> isinstance(caller_source(), str)
        True
    """
    frame = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("labkit.exercises"):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return ""
    return "".join(linecache.getlines(frame.f_code.co_filename))


def literals(source: str) -> set[str]:
    """Every string literal written in ``source`` (nothing when it does not parse).

    Example:
        >>> sorted(literals("name = 'llava' + x"))
        ['llava']
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
