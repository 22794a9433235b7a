"""Every lesson in notebooks/, run by nbval against FastChat's real front end, as a student with
``LABKIT_BASE_URL`` set would run it.

Each notebook runs in its own pytest process so that its kernel inherits an environment pointing at
the front (the parent session's tests/conftest.py clears LABKIT_* for the normal suite). The plugin
nbval_outputs.py records what every cell showed. A second test runs the lesson the same way on the
practice server and compares: a cell that shows something there but nothing on the front leans on the
practice server. A lesson that fails because of the lesson itself (not labkit) is marked xfail with why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 120
HERE = Path(__file__).resolve().parent

# Lessons known to fail under nbval on the real front because of the lesson (not the kit): name -> reason.
LESSON_FAILURES: dict[str, str] = {}

# Cells that show something on the practice server but nothing on the real front, because of the lesson:
# notebook -> (a snippet of the cell's source, why). Matched by source, so a rewritten cell is checked again.
SILENT_ON_FRONT: dict[str, tuple[str, str]] = {
    "03-streaming-and-cleanup.ipynb": (
        '"X-Practice-Fault"',
        "lesson 03's mid-stream-error step sends the practice server's X-Practice-Fault header; a real backend "
        "ignores it, answers normally, and the cell's except branches never print"),
}


@dataclass(frozen=True)
class NbvalRun:
    """One notebook under nbval: exit status, pytest's output, and (source, shown text) of each cell run."""

    returncode: int
    output: str
    cells: list[tuple[str, str]]


def _run_nbval(notebook: Path, env: dict[str, str]) -> NbvalRun:
    with tempfile.TemporaryDirectory(prefix="labkit-nbval-") as tmp:
        record = Path(tmp) / "cells.json"
        child_env = {**env, "NBVAL_OUTPUTS_FILE": str(record),
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval-lax", f"--nbval-cell-timeout={CELL_TIMEOUT}",
             "-p", "nbval_outputs", "-p", "no:cacheprovider", "-o", "addopts=", "-o", "timeout=0", "-q", "-x",
             str(notebook)],
            cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=CELL_TIMEOUT * 12, check=False,
        )
        cells = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else []
    return NbvalRun(done.returncode, done.stdout[-6000:] + "\n" + done.stderr[-2000:],
                    [(c["source"], c["shown"]) for c in cells])


@pytest.fixture(scope="session")
def nbval_on_front(env_on_front: dict[str, str]) -> Any:
    """``run(notebook)``: the notebook's nbval run against the real front (run once, then remembered)."""
    runs: dict[Path, NbvalRun] = {}

    def run(notebook: Path) -> NbvalRun:
        if notebook not in runs:
            # LABKIT_PRACTICE_FAST: for any practice server a cell starts itself.
            runs[notebook] = _run_nbval(notebook, {**env_on_front, "LABKIT_PRACTICE_FAST": "1"})
        return runs[notebook]

    return run


def _param(path: Path) -> Any:
    reason = LESSON_FAILURES.get(path.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("notebook", [_param(p) for p in NOTEBOOKS])
def test_lesson_runs_on_the_real_front(notebook: Path, nbval_on_front: Any) -> None:
    run = nbval_on_front(notebook)
    assert run.returncode == 0, f"{notebook.name} failed on the real FastChat front:\n{run.output}"
    assert run.cells, f"nbval ran no cell of {notebook.name}:\n{run.output}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_lesson_shows_on_the_front_what_it_shows_on_practice(notebook: Path, env_on_front: dict[str, str],
                                                             nbval_on_front: Any) -> None:
    """A cell that shows something on the practice server must show something on the real front: an
    empty cell there means the lesson leaned on the practice server (a fault header, its wording, its
    limits), which the rule "nothing in a lesson depends on the backend" forbids."""
    practice_env = {k: v for k, v in env_on_front.items() if k not in ("LABKIT_BASE_URL", "LABKIT_API_KEY")}
    on_practice = _run_nbval(notebook, {**practice_env, "LABKIT_PRACTICE_FAST": "1"})
    on_front = nbval_on_front(notebook)
    assert on_practice.returncode == 0, f"{notebook.name} failed on the practice server:\n{on_practice.output}"
    assert on_front.returncode == 0, f"{notebook.name} failed on the real front (see the nbval test)"
    assert [src for src, _ in on_practice.cells] == [src for src, _ in on_front.cells]
    silent = [(src, shown) for (src, shown), (_, real) in zip(on_practice.cells, on_front.cells, strict=True)
              if shown.strip() and not real.strip()]
    known = SILENT_ON_FRONT.get(notebook.name)
    if known and silent and all(known[0] in src for src, _ in silent):
        pytest.xfail(known[1])
    report = "\n".join(f"--- cell:\n{src[:300]}\n--- shows on the practice server, nothing on the front:\n{shown[:300]}"
                       for src, shown in silent)
    assert not silent, f"{notebook.name}: cells silent on the real FastChat front:\n{report}"
