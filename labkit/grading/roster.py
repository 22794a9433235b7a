"""The LMS side of a gradebook: match student ids against the class roster an LMS exports, and write
the grades in the columns that LMS imports.

``--format canvas``: Canvas's gradebook export (``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``,
``Section`` …); ids match ``SIS Login ID``, ``SIS User ID``, ``Login ID``, ``ID`` or the name; the
grade goes into a column named after the assignment. ``--format moodle``: Moodle's grader export
(``First name``, ``Last name``, ``ID number``, ``Username``, ``Email address`` …); ids match the
username, the ID number, the email address or its part before ``@``. ``--format plain``: any CSV whose
first column is the id. The roster's own columns are kept, in its order, and its rows too; every
cell is neutralised against formulas and the file is UTF-8 with a byte-order mark (Excel).

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "r.csv").write_text("Username,Email address\\nana,ana@uni.edu\\n", encoding="utf-8")
    >>> roster = Roster.load(folder / "r.csv", "moodle")
    >>> roster.match("ANA@uni.edu"), roster.match("nobody")
    (0, None)
"""

from __future__ import annotations

import csv
import io
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ..i18n import _
from .assignments import GradingError
from .gradebook import neutralise

__all__ = ["FORMATS", "Roster", "write_export"]

FORMATS = ("plain", "canvas", "moodle")
_KEYS = {
    "canvas": ("SIS Login ID", "SIS User ID", "Login ID", "ID", "Student"),
    "moodle": ("Username", "ID number", "Email address"),
}


def _key(value: str) -> str:
    return unicodedata.normalize("NFC", value).strip().casefold()


@dataclass
class Roster:
    """The rows of an LMS export and, for each id it knows, the row it belongs to."""

    header: list[str]
    rows: list[list[str]]
    format: str
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str], fmt: str) -> "Roster":
        """Read an LMS's CSV export (UTF-8, with or without a byte-order mark)."""
        if fmt not in FORMATS:
            raise GradingError(_("Unknown gradebook format '{format}': choose one of {formats}.").format(
                format=fmt, formats=", ".join(FORMATS)))
        try:
            text = Path(path).read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise GradingError(_("Cannot read the roster {path}: {error}. Export it from the LMS as a UTF-8 CSV "
                                 "file.").format(path=str(path), error=exc)) from None
        records = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
        if not records:
            raise GradingError(_("The roster {path} is empty: export the class list from the LMS.").format(
                path=str(path)))
        header, rows = [h.strip() for h in records[0]], records[1:]
        columns = [header.index(k) for k in _KEYS.get(fmt, ()) if k in header] or ([0] if fmt == "plain" else [])
        if not columns:
            raise GradingError(_("The roster {path} has none of the columns a {format} export has ({columns}): "
                                 "choose the matching --format.").format(
                path=str(path), format=fmt, columns=", ".join(_KEYS[fmt])))
        roster = cls(header, rows, fmt)
        for number, row in enumerate(rows):
            for column in columns:
                value = row[column] if column < len(row) else ""
                if value.strip():
                    roster.index.setdefault(_key(value), number)
                    if "@" in value and header[column] == "Email address":
                        roster.index.setdefault(_key(value.split("@", 1)[0]), number)
        return roster

    def match(self, student: str) -> int | None:
        """The roster row of a student id, or ``None``."""
        return self.index.get(_key(student))


def write_export(roster: Roster, grades: dict[str, dict[str, str]], assignment: str, questions: list[str],
                 path: str | os.PathLike[str]) -> list[str]:
    """Write the roster with the grades added (atomically); return the graded ids it has no row for."""
    by_row: dict[int, dict[str, str]] = {}
    unmatched = []
    for student, row in sorted(grades.items()):
        number = roster.match(student)
        if number is None:
            unmatched.append(student)
        else:
            by_row.setdefault(number, row)
    added = [assignment] if roster.format in ("canvas", "moodle") else [*questions, "total", "status"]
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    with temporary.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([neutralise(h) for h in roster.header + added])
        for number, record in enumerate(roster.rows):
            record = record + [""] * (len(roster.header) - len(record))
            row = by_row.get(number)
            if row is None:
                values = [""] * len(added)
            elif added == [assignment]:
                values = [row.get("total", "")]
            else:
                values = [row.get(name, "") for name in added]
            writer.writerow([neutralise(v) for v in record[: len(roster.header)] + values])
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    return unmatched
