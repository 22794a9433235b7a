"""Per-student feedback, in the students' language (Chinese unless the TA chooses ``--lang en``).

A public test that failed shows the test's own message (the student can run it); a hidden test
shows only its ``failure_message`` hint, never its code. Cells that raised or ran out of time are
listed with the exception's type and message, and a run stopped as a whole says why — in the
students' language even when the TA's own is another (see :class:`Note`).

Example:
    >>> text = render("ana", "multimodal-request", {"q1": 3.0}, {"q1": 4.0}, [], "ok", "", {"q1": [
    ...     {"hidden": True, "passed": False, "hint": "隐藏测试：JPEG 也要转成 PNG。", "points": 1}]})
    >>> "q1：3 / 4 分" in text and "JPEG" in text
    True
"""

from __future__ import annotations

import re
from typing import Any

from ..i18n import _, translations

__all__ = ["N_", "Note", "STATUSES_TEXT", "cell_error", "failure_line", "render", "status_text"]


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "extract, translate later"
    """Mark a message for the catalog without translating it yet.

    Example:
        >>> N_("stopped")
        'stopped'
    """
    return message


class Note(str):
    """A message in the TA's language (it *is* that string) that can be told in another.

    Example:
        >>> note = Note(N_("exited with status {code}"), code=3)
        >>> note.told("en")
        'exited with status 3'
    """

    msgid: str
    fields: dict[str, Any]

    def __new__(cls, msgid: str, **fields: Any) -> "Note":
        note = super().__new__(cls, _(msgid).format(**fields))
        note.msgid, note.fields = msgid, fields
        return note

    def told(self, lang: str) -> str:
        """The message in ``lang`` (its fields too, where they are notes)."""
        fields = {k: told(v, lang) for k, v in self.fields.items()}
        return translations(lang).gettext(self.msgid).format(**fields)


def told(value: Any, lang: str) -> Any:
    """``value`` in ``lang`` if it is a :class:`Note` (or a list of them joined by "; ")."""
    if isinstance(value, Note):
        return value.told(lang)
    if isinstance(value, list):
        return "; ".join(str(told(v, lang)) for v in value)
    return value


STATUSES_TEXT = {
    "ok": N_("The notebook ran from top to bottom."),
    "errors": N_("The notebook ran to the end, but some cells raised (see below). What those cells should have "
                 "defined is missing, and the tests that need it score 0."),
    "timeout": N_("The notebook ran past the time limit and was stopped; every question of this submission scores 0. "
                  "Look for an endless loop or code that waits forever."),
    "crashed": N_("The notebook's process ended unexpectedly (e.g. over the memory limit, or it exited); every "
                  "question of this submission scores 0."),
    "invalid": N_("The submitted file is not a valid Jupyter notebook (e.g. broken JSON, or another kind of file), "
                  "so it could not be run; every question scores 0. Save the notebook again and submit the .ipynb "
                  "file."),
}

_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Timeout|Interrupt|Exit))(?::\s*(.*))?$")


def status_text(status: str, lang: str) -> str:
    """What a status means, for the student.

    Example:
        >>> status_text("ok", "en")
        'The notebook ran from top to bottom.'
    """
    return translations(lang).gettext(STATUSES_TEXT[status]) if status in STATUSES_TEXT else status


def cell_error(report: dict[str, Any], lang: str) -> str:
    """One line for a cell that raised or ran out of time.

    Example:
        >>> cell_error({"index": 2, "timeout": True}, "en")
        'cell 3 ran out of time and was stopped'
    """
    gettext = translations(lang).gettext
    if report.get("timeout"):
        return gettext(N_("cell {number} ran out of time and was stopped")).format(number=report["index"] + 1)
    return gettext(N_("cell {number} raised: {error}")).format(number=report["index"] + 1, error=report.get("error"))


def failure_line(message: str) -> str:
    """The exception line of a failed doctest's report (what the student's public test said).

    Example:
        >>> failure_line("Trying: ...\\nException raised:\\n    AssertionError: 应当返回列表\\n")
        'AssertionError: 应当返回列表'
    """
    for line in message.splitlines():  # the first exception: later ones often follow from it
        match = _ERROR_LINE.match(line)
        if match:
            return line.strip()
    return ""


def _number(value: float) -> str:
    return f"{value:g}"


def render(student: str, assignment: str, scores: dict[str, float], possible: dict[str, float],
           cell_errors: list[str], status: str, detail: Any, cases: dict[str, list[dict[str, Any]]],
           lang: str = "zh") -> str:
    """The Markdown feedback for one student, in ``lang``."""
    t = translations(lang).gettext
    total, out_of = sum(scores.values()), sum(possible.values())
    lines = [t(N_("# Feedback on {assignment}: {student}")).format(assignment=assignment, student=student), "",
             t(N_("**Total: {total} / {possible}**")).format(total=_number(total), possible=_number(out_of)), "",
             status_text(status, lang)]
    detail = told(detail, lang)
    if detail:
        lines += ["", t(N_("Note: {detail}")).format(detail=detail)]
    lines += ["", t(N_("## Score per question")), ""]
    for question in possible:
        lines.append(t(N_("- {question}: {score} / {possible} points")).format(
            question=question, score=_number(scores.get(question, 0.0)), possible=_number(possible[question])))
        for number, case in enumerate(cases.get(question, []), start=1):
            kind = t(N_("hidden test")) if case["hidden"] else t(N_("public test"))
            if case["passed"]:
                lines.append(t(N_("  - ✅ {kind} {number}: passed ({points} points)")).format(
                    kind=kind, number=number, points=_number(case["points"])))
            else:
                hint = case.get("hint") or ""
                if case.get("not_run"):
                    hint = hint or t(N_("the test did not run (the notebook stopped before it)"))
                elif not hint:
                    hint = t(N_("hidden test failed")) if case["hidden"] else t(N_("the output differs from what was "
                                                                                   "expected"))
                lines.append(t(N_("  - ❌ {kind} {number}: {hint}")).format(kind=kind, number=number, hint=hint))
    if cell_errors:
        lines += ["", t(N_("## Cells that raised")), ""] + [f"- {entry}" for entry in cell_errors]
    lines += ["", t(N_("You can run the public tests yourself in the notebook with `grader.check(\"qN\")`; hidden "
                       "tests only give a hint.")), ""]
    return "\n".join(lines)
