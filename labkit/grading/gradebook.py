"""The gradebook: a CSV file written one row per student, flushed and fsynced as each is graded.

Columns: ``student``, ``file`` (the submitted entry's original name), one score per question,
``total``, ``possible``, ``status``, ``reason``. A crash or Ctrl-C loses nothing already written;
opening the same file again keeps its complete rows (a row cut off half-way is dropped) so grading
resumes with the students not yet graded; closing it sorts the rows by student.

It opens in Excel as it is: UTF-8 with a byte-order mark, and a text cell that a spreadsheet would
run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written
with a leading ``'`` as OWASP recommends (read back without it).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "grades.csv"
    >>> with Gradebook(path, ["q1", "q2"]) as book:
    ...     book.add({"student": "ana", "q1": 2, "q2": 1, "total": 3, "possible": 4, "status": "ok", "reason": ""})
    >>> sorted(Gradebook(path, ["q1", "q2"]).rows)
    ['ana']
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from ..i18n import _
from .assignments import GradingError

__all__ = ["STATUSES", "TEXT_COLUMNS", "Gradebook", "columns", "neutralise", "restore"]

STATUSES = ("ok", "errors", "timeout", "crashed", "invalid")


def columns(questions: list[str]) -> list[str]:
    """The gradebook's header for these questions.

    Example:
        >>> columns(["q1"])
        ['student', 'file', 'q1', 'total', 'possible', 'status', 'reason']
    """
    return ["student", "file", *questions, "total", "possible", "status", "reason"]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TEXT_COLUMNS = ("student", "file", "reason")


def neutralise(value: str) -> str:
    """A text cell a spreadsheet shows as text, never runs (OWASP's CSV injection advice).

    Example:
        >>> neutralise("=HYPERLINK(1)"), neutralise("@SUM(A1)"), neutralise("王芳")
        ("'=HYPERLINK(1)", "'@SUM(A1)", '王芳')
    """
    return "'" + value if value.startswith(_FORMULA_START) else value


def restore(value: str) -> str:
    """The cell's text as it was before :func:`neutralise`.

    Example:
        >>> restore(neutralise("-2+3"))
        '-2+3'
    """
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


class Gradebook:
    """An append-only CSV gradebook that resumes where it stopped (see the module's docstring)."""

    def __init__(self, path: str | os.PathLike[str], questions: list[str]) -> None:
        self.path = Path(path)
        self.header = columns(questions)
        self.rows: dict[str, dict[str, str]] = {}
        self._handle: Any = None
        if self.path.exists() and self.path.stat().st_size:
            self._load()

    def _load(self) -> None:
        text = self.path.read_bytes().decode("utf-8-sig", errors="replace")
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header != self.header:
            raise GradingError(_("{path} is a gradebook for other questions ({found}); expected the columns {wanted}. "
                                 "Write the grades to a new file with -o.").format(
                path=str(self.path), found=", ".join(header or []), wanted=", ".join(self.header)))
        complete = text.endswith("\n")
        records = list(reader)
        if records and not complete:
            records.pop()  # the last row was cut off by a crash
        for record in records:
            if len(record) == len(self.header) and record[-2] in STATUSES:
                row = dict(zip(self.header, record, strict=True))
                for name in TEXT_COLUMNS:
                    row[name] = restore(row[name])
                self.rows[row["student"]] = row
        if not complete or len(records) != len(self.rows):
            self._rewrite()

    def _rewrite(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(self.header)
            for student in sorted(self.rows):
                writer.writerow(self._cells(self.rows[student]))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def __enter__(self) -> "Gradebook":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or not self.path.stat().st_size
        self._handle = self.path.open("a", encoding="utf-8-sig", newline="")
        if fresh:
            self._write(self.header)
        return self

    def _write(self, values: list[Any]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self._handle.write(buffer.getvalue())
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def _cells(self, row: dict[str, Any]) -> list[str]:
        return [neutralise(str(row.get(name, ""))) if name in TEXT_COLUMNS else str(row.get(name, ""))
                for name in self.header]

    def add(self, row: dict[str, Any]) -> None:
        """Append one student's row and make it durable before returning."""
        self._write(self._cells(row))
        self.rows[str(row["student"])] = {name: str(row.get(name, "")) for name in self.header}

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            if self.rows:
                self._rewrite()  # sorted by student, for the TA and the LMS import
