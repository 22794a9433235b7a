"""The gradebook: a CSV file written one row per student, flushed and fsynced as each is graded.

Columns: ``student``, one score per question, ``total``, ``possible``, ``status``, ``reason``. A crash
or Ctrl-C loses nothing already written; opening the same file again keeps its complete rows (a row
cut off half-way is dropped) so grading resumes with the students not yet graded.

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

__all__ = ["STATUSES", "Gradebook", "columns"]

STATUSES = ("ok", "errors", "timeout", "crashed", "invalid")


def columns(questions: list[str]) -> list[str]:
    """The gradebook's header for these questions.

    Example:
        >>> columns(["q1"])
        ['student', 'q1', 'total', 'possible', 'status', 'reason']
    """
    return ["student", *questions, "total", "possible", "status", "reason"]


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
        text = self.path.read_bytes().decode("utf-8", errors="replace")
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
                self.rows[record[0]] = dict(zip(self.header, record, strict=True))
        if not complete or len(records) != len(self.rows):
            self._rewrite()

    def _rewrite(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, self.header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows.values())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def __enter__(self) -> "Gradebook":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or not self.path.stat().st_size
        self._handle = self.path.open("a", encoding="utf-8", newline="")
        if fresh:
            self._write(self.header)
        return self

    def _write(self, values: list[Any]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self._handle.write(buffer.getvalue())
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def add(self, row: dict[str, Any]) -> None:
        """Append one student's row and make it durable before returning."""
        values = [row.get(name, "") for name in self.header]
        self._write(values)
        self.rows[str(row["student"])] = {k: str(v) for k, v in zip(self.header, values, strict=True)}

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
