"""The graded assignments: otter-grader master notebooks shipped in ``labkit/assignments/``.

A master notebook holds the questions, the solutions and the public and hidden tests. ``otter
assign`` turns it into a student version (solutions and hidden tests removed) and an autograder
version (all tests). A TA who wants hidden tests that students cannot read in the public package
passes the path of their own master notebook wherever a name is accepted.

Example:
    >>> "multimodal-request" in list_assignments() and "batch-evaluation" in list_assignments()
    True
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LabkitError
from ..i18n import _

__all__ = ["ASSIGNMENTS_DIR", "GradingError", "Built", "list_assignments", "master_path", "build",
           "write_student_version"]

ASSIGNMENTS_DIR = Path(__file__).resolve().parent.parent / "assignments"


class GradingError(LabkitError):
    """An assignment, a submissions folder or a gradebook cannot be used as given."""


def list_assignments() -> list[str]:
    """The names of the shipped assignments, sorted.

    Example:
        >>> list_assignments()[:1]
        ['batch-evaluation']
    """
    return sorted(p.stem for p in ASSIGNMENTS_DIR.glob("*.ipynb"))


def master_path(name: str | os.PathLike[str]) -> Path:
    """The master notebook for a shipped assignment's name, or a path to a master notebook.

    Example:
        >>> master_path("batch-evaluation").name
        'batch-evaluation.ipynb'
    """
    candidate = Path(name)
    if candidate.suffix == ".ipynb" and candidate.is_file():
        return candidate.resolve()
    shipped = ASSIGNMENTS_DIR / f"{name}.ipynb"
    if shipped.is_file():
        return shipped
    raise GradingError(_("No assignment named '{name}': choose one of {names} (`labkit assignment --list`), "
                         "or give the path of an otter master notebook.").format(
        name=str(name), names=", ".join(list_assignments())))


@dataclass(frozen=True)
class Built:
    """What ``otter assign`` made from a master notebook, in ``root``."""

    name: str
    root: Path
    student_notebook: Path
    autograder_notebook: Path
    autograder_zip: Path

    def tests(self) -> dict[str, Any]:
        """All the tests (public and hidden) in otter's OK format, by question name."""
        nb = json.loads(self.autograder_notebook.read_text(encoding="utf-8"))
        tests = nb.get("metadata", {}).get("otter", {}).get("tests", {})
        if not tests:
            raise GradingError(_("The master notebook of {name} has no tests: mark them with # BEGIN TESTS.").format(
                name=self.name))
        return dict(tests)


def build(name: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Built:
    """Run ``otter assign`` on an assignment's master notebook into the empty folder ``dest``.

    Example:
        >>> built = build("batch-evaluation", tempfile.mkdtemp())  # doctest: +SKIP
        >>> sorted(built.tests())                                  # doctest: +SKIP
        ['q1', 'q2', 'q3', 'q4']
    """
    try:
        from otter.assign import main as otter_assign
    except ImportError:
        raise GradingError(_("Grading needs otter-grader: install it with pip install 'labkit[grade]'.")) from None
    master = master_path(name)
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labkit-assign-") as scratch:
        # otter assign reads files next to the master: give it a folder with the master alone.
        copy = Path(scratch) / master.name
        shutil.copyfile(master, copy)
        log = io.StringIO()
        cwd = os.getcwd()
        try:
            os.chdir(scratch)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                otter_assign(str(copy), str(root), no_pdfs=True, no_run_tests=True)
        except Exception as exc:
            raise GradingError(_("otter assign failed on {path}: {error}. Check the master notebook's "
                                 "# BEGIN/END markers.").format(path=str(master), error=exc)) from None
        finally:
            os.chdir(cwd)
    zips = sorted((root / "autograder").glob("*.zip"))
    return Built(master.stem, root, root / "student" / master.name, root / "autograder" / master.name,
                 zips[-1] if zips else root / "autograder" / "missing.zip")


def write_student_version(name: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Write the student version of an assignment (no solutions, no hidden tests) into ``dest``;
    return the notebook's path. An existing notebook there is never overwritten.

    Example:
        >>> write_student_version("multimodal-request", "handout")  # doctest: +SKIP
        PosixPath('handout/multimodal-request.ipynb')
    """
    target_dir = Path(dest)
    master = master_path(name)
    target = target_dir / master.name
    if target.exists():
        raise GradingError(_("{path} already exists: a student's work is never overwritten. Choose another "
                             "folder or move the file away.").format(path=str(target)))
    with tempfile.TemporaryDirectory(prefix="labkit-assign-") as scratch:
        built = build(master, Path(scratch) / "dist")
        target_dir.mkdir(parents=True, exist_ok=True)
        for item in sorted(built.student_notebook.parent.iterdir()):
            destination = target_dir / item.name
            if destination.exists():
                continue
            if item.is_dir():
                shutil.copytree(item, destination)
            else:
                shutil.copyfile(item, destination)
    return target
