"""Self-checks of lesson 05 (batch evaluation): a word-aware scoring rule, and your own keywords.

Example:
    >>> import labkit
    >>> bool(check_scorer(labkit.score_keywords, quiet=True))
    False
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..i18n import _
from ._common import N_, Checker, Verdict, call_student, guarded, need, not_callable

__all__ = ["need", "check_scorer", "check_my_keywords"]

# (case name, answer, keywords, score)
_SCORER_CASES: list[tuple[str, str, list[str], float]] = [
    (N_("two keywords, both there"), "A cat sits on a mat.", ["cat", "mat"], 1.0),
    (N_("capital letters"), "A CAT.", ["cat"], 1.0),
    (N_("a keyword inside a longer word"), "This category is empty.", ["cat"], 0.0),
    (N_("another word that contains the keyword"), "Seeds scattered on the ground.", ["cat"], 0.0),
    (N_("a word that ends with the keyword"), "A bobcat hunts at night.", ["cat"], 0.0),
    (N_("one of two"), "A grey, dark photo.", ["dark", "gray"], 0.5),
    (N_("a keyword of two words"), "I like ice cream.", ["ice cream", "cake"], 0.5),
    (N_("a Chinese answer"), "图中是一只棕色的猫。", ["猫", "棕色"], 1.0),
    (N_("a Chinese answer, one keyword missing"), "一只猫在睡觉", ["猫", "狗"], 0.5),
    (N_("no keywords expected"), "Anything.", [], 1.0),
]


@guarded(1)
def check_scorer(my_score: Callable[[str, Sequence[str]], float], *, quiet: bool = False) -> Verdict:
    """Exercise 1: ``my_score(answer, keywords)`` is the fraction of keywords found, ignoring case,
    matching English keywords as whole words and Chinese ones anywhere; 1.0 when none are expected.

    Example:
        >>> bool(check_scorer(lambda answer, keywords: 1.0, quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    if not_callable(c, my_score, "my_score"):
        return c.done()
    for name, answer, keywords, expected in _SCORER_CASES:
        case = _("case “{name}”").format(name=_(name))
        ok, got = call_student(c, case, my_score, answer, list(keywords))
        if not ok:
            continue
        if not isinstance(got, (int, float)) or isinstance(got, bool) or not math.isclose(got, expected, abs_tol=1e-9):
            c.fail(_("{case}: my_score({answer!r}, {keywords}) returned {got!r}").format(
                case=case, answer=answer, keywords=keywords, got=got))
    return c.done()


# Words about how a picture looks rather than what it shows (step 1's kind of keyword).
_LOOKS = {
    "red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "brown", "black", "white", "gray", "grey",
    "golden", "silver", "colour", "color", "colours", "colors", "colourful", "colorful", "dark", "bright", "light",
    "dim", "pale", "square", "round", "wide", "tall", "photo", "image", "picture",
    "红", "红色", "橙", "橙色", "黄", "黄色", "绿", "绿色", "蓝", "蓝色", "紫", "紫色", "粉色", "棕", "棕色",
    "黑", "黑色",
    "白", "白色", "灰", "灰色", "颜色", "暗", "亮", "明亮", "昏暗", "方形", "正方形", "图片", "照片",
}


def _only_looks(word: str) -> bool:
    return word.strip().lower() in _LOOKS


@guarded(2)
def check_my_keywords(my_expected: object, weak: object, records: Mapping[str, Any],
                      my_score: Callable[[str, Sequence[str]], float], folder: str = "images", *,
                      quiet: bool = False) -> Verdict:
    """Exercise 2: your own keywords for every photo (2–4 each), and ``weak``: the photos whose
    answers in ``records`` score below 1 with ``my_score``, sorted by name.

    Example:
        >>> bool(check_my_keywords({}, [], {}, lambda a, k: 1.0, quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    names = sorted(p.name for p in Path(folder).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}) \
        if Path(folder).is_dir() else []
    if not isinstance(my_expected, dict):
        c.fail(_("my_expected should be a dict {{file name: [keywords]}}, but it is {kind}")
               .format(kind=type(my_expected).__name__))
        return c.done()
    if not my_expected:
        c.fail(_("my_expected is empty: give each photo in {folder} its own keywords").format(folder=folder))
        return c.done()
    missing = [n for n in names if n not in my_expected]
    c.expect(not missing, _("no keywords yet for: {names}").format(names=", ".join(missing)))
    for name, words in my_expected.items():
        if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) and w.strip() for w in words):
            c.fail(_("{name}: the keywords should be a list of non-empty strings").format(name=name))
        elif not 2 <= len(set(w.lower() for w in words)) <= 4:
            c.fail(_("{name}: give 2–4 different keywords (now {count})").format(name=name, count=len(set(words))))
    if c.problems:
        return c.done()
    for name, words in my_expected.items():
        if all(_only_looks(w) for w in words):
            c.fail(_("{name}: {words} describe colours, brightness or shape, like step 1's keywords. The exercise "
                     "asks for keywords about what is in the picture (the things you see)").format(
                name=name, words=", ".join(words)))
    if c.problems:
        return c.done()
    truth = []
    for name, record in records.items():
        if name in my_expected:
            try:
                score = my_score(str(record.get("answer", "")), list(my_expected[name]))
            except Exception:
                score = 0.0
            if score < 1:
                truth.append(name)
    truth.sort()
    if not isinstance(weak, list):
        c.fail(_("weak should be a list of file names, but it is {kind}").format(kind=type(weak).__name__))
    elif weak != truth:
        if sorted(map(str, weak)) == truth:
            c.fail(_("weak has the right names but not in alphabetical order"))
        else:
            c.fail(_("weak is not the list of photos whose answers score below 1 with my_score and my_expected "
                     "(the batch's own scores used other keywords and plain substring matching)"))
    return c.done()
