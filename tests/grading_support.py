"""Submissions for the grading tests and benchmark: made from what ``otter assign`` writes.

The full answer is otter's autograder notebook (the solutions); a partial one is the student
version with some solution cells put back; broken, raising, hanging and hostile ones are built from
those. Hostile cells each raise when the sandbox holds (so the feedback lists them) and succeed if
it does not.
"""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path
from typing import Any

from labkit.grading import build
from labkit.grading.assignments import ASSIGNMENTS_DIR
from labkit.grading.grade import _repository


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _code(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}


def _defines(cell: dict[str, Any], name: str) -> bool:
    return cell["cell_type"] == "code" and re.search(rf"^def {name}\(", "".join(cell["source"]), re.M) is not None


class Maker:
    """Builds submissions of one assignment."""

    def __init__(self, assignment: str, scratch: Path) -> None:
        built = build(assignment, scratch / f"dist-{assignment}")
        self.name = assignment
        self.autograder_zip = built.autograder_zip
        self.solution = _load(built.autograder_notebook)
        self.student = _load(built.student_notebook)
        # what a student submits carries the student version's metadata (assignment name, public tests)
        self.solution["metadata"] = copy.deepcopy(self.student["metadata"])
        self.functions = [m.group(1) for c in self.solution["cells"] if c["cell_type"] == "code"
                          for m in [re.search(r"^def (\w+)\(", "".join(c["source"]), re.M)] if m]

    def full(self) -> dict[str, Any]:
        return copy.deepcopy(self.solution)

    def partial(self, solved: list[str]) -> dict[str, Any]:
        """The student version with the solutions of the functions in ``solved`` filled in."""
        nb = copy.deepcopy(self.student)
        for i, cell in enumerate(nb["cells"]):
            for name in solved:
                if _defines(cell, name):
                    nb["cells"][i] = copy.deepcopy(next(c for c in self.solution["cells"] if _defines(c, name)))
        return nb

    def with_cell_before(self, function: str, source: str, *, replace: bool = False) -> dict[str, Any]:
        """The full answer with a cell inserted before (or replacing) the one defining ``function``."""
        nb = self.full()
        index = next(i for i, c in enumerate(nb["cells"]) if _defines(c, function))
        if replace:
            nb["cells"][index] = _code(source)
        else:
            nb["cells"].insert(index, _code(source))
        return nb

    def with_cells_at_end(self, sources: list[str]) -> dict[str, Any]:
        nb = self.full()
        nb["cells"].extend(_code(s) for s in sources)
        return nb


def hostile_cells(assignment: str, gradebook: Path, other: Path, submissions: Path) -> list[str]:
    """Cells that try to read the hidden tests, other submissions and the gradebook, change them,
    reach the network, fork without end and grab memory. Each raises when it is stopped."""
    master = ASSIGNMENTS_DIR / f"{assignment}.ipynb"
    git_dirs = _repository()[0]
    history = ([f"head = open({git_dirs[-1] + '/HEAD'!r}).read()  # the git history holds the masters"]
               if git_dirs else [])
    return history + [
        f"leaked = open({str(master)!r}, encoding='utf-8').read()\nassert 'hidden' in leaked",
        "import glob\nfound = glob.glob('/tmp/**/tests/q*.py', recursive=True) + "
        "glob.glob('/tmp/labkit-grade-*/**/*.ipynb', recursive=True)\nassert found, 'no autograder found'",
        f"book = open({str(gradebook)!r}, encoding='utf-8').read()\nassert 'student' in book, 'gradebook hidden'",
        f"import os\nos.remove({str(gradebook)!r})",
        f"stolen = open({str(other)!r}, encoding='utf-8').read()",
        f"open({str(submissions / 'planted.ipynb')!r}, 'w').write('{{}}')",
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3).close()",
        "import sys\nsecret = sys.stdin.read()\nassert secret, 'stdin is empty'",
        "import os, time\nkids = []\nfor _ in range(5000):\n    pid = os.fork()\n    if pid == 0:\n"
        "        time.sleep(30)\n        os._exit(0)\n    kids.append(pid)",
        "hog = bytearray(16 * 1024 ** 3)",
        "print('x' * 5_000_000)",
    ]


def write(path: Path, nb: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    return path


def rows(path: Path) -> dict[str, dict[str, str]]:
    """The gradebook's rows by student (the CSV is UTF-8 with a BOM, for Excel)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}
