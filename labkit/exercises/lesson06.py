"""Self-checks of lesson 06 (the playground): an answer asked in code, the tiles of a tall picture, and
the conversation saved as a report.

Example:
    >>> bool(check_tiles(None, quiet=True))
    False
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..i18n import _
from ..playground.modelview import anyres_plan
from ._common import Checker, Verdict, guarded, need

__all__ = ["need", "check_answer", "check_tiles", "check_report"]

_COLOUR_WORDS = re.compile(r"colou?r|颜色|色彩|什么色", re.IGNORECASE)
REPORT_NAME = "report.jsonl"


def _turns(c: Checker, pg: object) -> list[Any] | None:
    """The playground's turns, or None after telling the student that ``pg`` is not step 1's playground."""
    turns = getattr(pg, "turns", None)
    if isinstance(turns, list):
        return list(turns)
    c.fail(_("pg is not the playground of step 1 (it is {kind}): run step 1 again, then this cell")
           .format(kind=type(pg).__name__))
    return None


@guarded(1)
def check_answer(answer_1: object, pg: object, *, quiet: bool = False) -> Verdict:
    """Exercise 1: ``answer_1`` is the text of the playground's last answer, to a question about colours
    asked in code.

    Example:
        >>> bool(check_answer(None, None, quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    turns = _turns(c, pg)
    if turns is None:
        return c.done()
    if answer_1 is None:
        c.fail(_("answer_1 is still None: ask the playground a question in code, wait for the answer, then keep "
                 "the answer's text in answer_1"))
        return c.done()
    if not isinstance(answer_1, str):
        inner = "answer" if hasattr(answer_1, "answer") else "text" if hasattr(answer_1, "text") else None
        if inner:
            c.fail(_("answer_1 is a {kind}, not the answer's text: keep its {field} field")
                   .format(kind=type(answer_1).__name__, field=inner))
        else:
            c.fail(_("answer_1 should be the answer's text (a str), but it is {kind}")
                   .format(kind=type(answer_1).__name__))
        return c.done()
    if not turns:
        c.fail(_("the playground has no turns yet: answer_1 did not come from it. Ask it a question in code first"))
        return c.done()
    last = turns[-1]
    outcome = getattr(last, "outcome", None)
    if outcome == "streaming":
        c.fail(_("the last answer is still streaming: wait for it to end before you keep its text"))
    elif answer_1 != getattr(last, "answer", None):
        c.fail(_("answer_1 is not the text of the playground's last answer: did you copy it by hand, keep an "
                 "earlier turn's answer, or ask again afterwards?"))
    elif not answer_1.strip():
        c.fail(_("the last answer is empty (outcome {outcome!r}): ask again and let the answer finish")
               .format(outcome=outcome))
    elif not _COLOUR_WORDS.search(str(getattr(last, "question", ""))):
        c.fail(_("the last question ({question!r}) does not ask about colours, which the exercise asks for")
               .format(question=str(getattr(last, "question", ""))[:60]))
    return c.done()


@guarded(2)
def check_tiles(tiles: object, *, quiet: bool = False) -> Verdict:
    """Exercise 2: ``tiles`` is how many 336×336 tiles a 1000×3000 picture is cut into (the overview
    thumbnail not counted).

    Example:
        >>> bool(check_tiles("3", quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    plan = anyres_plan(1000, 3000)
    truth = plan.tiles
    if tiles is None:
        c.fail(_("tiles is still None: work the number out, check it with anyres_plan, and assign it"))
    elif isinstance(tiles, bool) or not isinstance(tiles, int):
        kind = type(tiles).__name__
        if hasattr(tiles, "tiles") and hasattr(tiles, "grid"):
            c.fail(_("tiles is the whole plan ({kind}), not the number of tiles: keep only its count")
                   .format(kind=kind))
        else:
            c.fail(_("tiles should be a whole number (int), but it is {kind} {got!r}").format(kind=kind, got=tiles))
    elif tiles == truth + 1:
        c.fail(_("{got} counts the overview thumbnail too: the exercise asks for the grid's tiles only")
               .format(got=tiles))
    elif tiles != truth:
        c.fail(_("{got} is not the number of tiles. A 1000×3000 picture is scaled into one of the five grids, the "
                 "one that keeps the most of its pixels; how many 336×336 squares make up that grid?")
               .format(got=tiles))
    return c.done()


def _rows(path: Path) -> list[Any] | None:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError):
        return None


@guarded(3)
def check_report(saved: object, pg: object, *, quiet: bool = False) -> Verdict:
    """Exercise 3: ``saved`` is the path the playground's ``save`` returned for ``outputs/report.jsonl``,
    and the file holds this playground's conversation.

    Example:
        >>> bool(check_report(None, None, quiet=True))
        False
    """
    c = Checker(3, quiet=quiet)
    turns = _turns(c, pg)
    if turns is None:
        return c.done()
    if saved is None:
        c.fail(_("saved is still None: save the conversation with the playground's save method and keep what it "
                 "returns"))
        return c.done()
    if not isinstance(saved, (str, os.PathLike)):
        c.fail(_("saved should be the path that save returns, but it is {kind}").format(kind=type(saved).__name__))
        return c.done()
    path = Path(saved)
    if path.name != REPORT_NAME or path.parent.name != "outputs":
        c.fail(_("saved is {path}: the exercise asks for the report at outputs/{name}").format(
            path=str(path), name=REPORT_NAME))
        return c.done()
    if not path.is_file():
        c.fail(_("there is no file at {path}: the playground's save method writes it (typing the name in a string "
                 "saves nothing)").format(path=str(path)))
        return c.done()
    rows = _rows(path)
    if rows is None or not all(isinstance(r, dict) for r in rows):
        c.fail(_("{path} is not a JSON Lines file (one JSON object per line)").format(path=str(path)))
        return c.done()
    if not rows:
        c.fail(_("{path} is empty: ask at least one question and let it finish before you save").format(
            path=str(path)))
        return c.done()
    if not all({"turn", "question", "answer", "outcome"} <= r.keys() for r in rows):
        c.fail(_("{path} does not hold a playground conversation (its lines lack turn, question, answer and "
                 "outcome): is it another lesson's file, such as lesson 05's batch answers?").format(path=str(path)))
        return c.done()
    asked = [str(getattr(t, "question", "")) for t in turns if getattr(t, "outcome", "streaming") != "streaming"]
    if [r["question"] for r in rows] != asked:
        c.fail(_("{path} holds {n} questions, but not this playground's {m}: save again after your last question "
                 "(an older file or another playground's conversation does not count)").format(
            path=str(path), n=len(rows), m=len(asked)))
    return c.done()
