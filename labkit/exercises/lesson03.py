"""Self-checks of lesson 03 (streaming): a stream-safe prefix cleaner and a piece counter.

Example:
    >>> def keep(pieces):
    ...     yield from pieces
    >>> bool(check_cleaner(keep, quiet=True))
    False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..i18n import _
from ._common import N_, Checker, Verdict, call_student, guarded, need, not_callable

__all__ = ["need", "check_cleaner", "check_piece_counter"]

# (case name, pieces of a stream, the text the cleaner must produce)
_CLEANER_CASES: list[tuple[str, list[str], str]] = [
    (N_("the prefix in its own piece"), ["assistant\n", "The cat", " is brown."], "The cat is brown."),
    (N_("a clean answer"), ["The cat", " is brown."], "The cat is brown."),
    (N_("the prefix split across pieces"), ["ass", "istant", "\nHi there"], "Hi there"),
    (N_("one character per piece"), list("assistant\nOK, done."), "OK, done."),
    (N_("a clean answer that contains the word assistant"),
     ["I am an AI assistant", ".\nThe word assistant\n", "appears twice."],
     "I am an AI assistant.\nThe word assistant\nappears twice."),
    (N_("an answer that starts with Assistant but is no prefix"), ["Assistant managers", " earn more."],
     "Assistant managers earn more."),
    (N_("a Chinese answer after the prefix"), ["assistant\n猫是", "棕色的。"], "猫是棕色的。"),
    (N_("a Chinese answer, one character per piece"), list("这是一只猫。"), "这是一只猫。"),
    (N_("a short answer that looks like the start of the prefix"), ["assi"], "assi"),
    (N_("empty pieces among the others"), ["", "assistant\n", "", "Hi", ""], "Hi"),
    (N_("an empty stream"), [], ""),
]


class _Watched:
    """An iterable stream that counts how many pieces have been taken from it."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.taken = 0

    def __iter__(self) -> Iterator[str]:
        for piece in self.pieces:
            self.taken += 1
            yield piece


@guarded(1)
def check_cleaner(my_cleaner: Callable[[Iterable[str]], Iterable[str]], *, quiet: bool = False) -> Verdict:
    """Exercise 1: ``my_cleaner(pieces)`` yields the stream's text without a leading ``"assistant\\n"``,
    whatever the chunking, and starts yielding before the stream ends.

    Example:
        >>> def clean(pieces):
        ...     yield "".join(pieces).removeprefix("assistant\\n")
        >>> bool(check_cleaner(clean, quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    if not_callable(c, my_cleaner, "my_cleaner"):
        return c.done()
    for name, pieces, expected in _CLEANER_CASES:
        case = _("case “{name}”").format(name=_(name))
        ok, out = call_student(c, case, lambda p: list(my_cleaner(p)), iter(pieces))
        if not ok:
            continue
        if not all(isinstance(piece, str) for piece in out):
            c.fail(_("{case}: the cleaner should yield strings; it yielded {kinds}")
                   .format(case=case, kinds=sorted({type(p).__name__ for p in out})))
            continue
        got = "".join(out)
        if got != expected:
            c.fail(_("{case}: the stream {pieces} became {got!r}").format(
                case=case, pieces=repr(pieces)[:80], got=got[:80]))
    # Streaming: a long clean answer must come out while it is still arriving.
    watched = _Watched(["word "] * 200)
    case = _("case “{name}”").format(name=_("a 200-piece answer"))
    ok, iterator = call_student(c, case, lambda w: iter(my_cleaner(w)), watched)
    if ok:
        ok, first = call_student(c, case, next, iterator, None)
        if ok and first is not None:
            c.expect(watched.taken <= 4, _(
                "{case}: your cleaner took {taken} pieces before giving out any text. A student watching the "
                "answer would wait for all of it: hold back only as much as could still be the prefix")
                .format(case=case, taken=watched.taken))
        elif ok:
            c.fail(_("{case}: the cleaner gave no text at all").format(case=case))
    return c.done()


def _pieces(items: list[str]) -> Iterator[str]:
    yield from items


_COUNTER_CASES: list[tuple[str, list[str], int]] = [
    (N_("three pieces"), ["The", " cat", "."], 3),
    (N_("empty pieces are not text"), ["", "Hi", "", "!", ""], 2),
    (N_("Chinese pieces"), ["猫", "是棕色", "的。"], 3),
    (N_("nothing but empty pieces"), ["", ""], 0),
]


@guarded(2)
def check_piece_counter(count_pieces: Callable[[Any], int], *, quiet: bool = False) -> Verdict:
    """Exercise 2: ``count_pieces(stream)`` counts the non-empty text pieces of a stream (read once).

    Example:
        >>> bool(check_piece_counter(lambda stream: 3, quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    if not_callable(c, count_pieces, "count_pieces"):
        return c.done()
    for name, items, expected in _COUNTER_CASES:
        case = _("case “{name}”").format(name=_(name))
        ok, got = call_student(c, case, count_pieces, _pieces(items))
        if ok and got != expected:
            c.fail(_("{case}: for the pieces {pieces} you counted {got!r}").format(case=case, pieces=items, got=got))
    return c.done()
