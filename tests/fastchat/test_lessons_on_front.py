"""Every lesson in notebooks/, run by nbval against FastChat's real front end, as a student with
``LABKIT_BASE_URL`` set would run it.

Each notebook runs in its own pytest process so that its kernel inherits an environment pointing at
the front (the parent session's tests/conftest.py clears LABKIT_* for the normal suite).
A lesson that fails here because of the lesson itself (not labkit) is marked xfail with the reason.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 120

# Lessons known to fail on the real front because of the lesson (not the kit): name -> reason.
LESSON_FAILURES: dict[str, str] = {}


def _param(path):  # type: ignore[no-untyped-def]
    reason = LESSON_FAILURES.get(path.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("notebook", [_param(p) for p in NOTEBOOKS])
def test_lesson_runs_on_the_real_front(notebook, env_on_front: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    env = {**env_on_front, "LABKIT_PRACTICE_FAST": "1"}  # for any practice server a cell starts itself
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", f"--nbval-cell-timeout={CELL_TIMEOUT}", "-p", "no:cacheprovider",
         "-o", "addopts=", "-o", "timeout=0", "-q", "-x", str(notebook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=CELL_TIMEOUT * 12, check=False,
    )
    assert done.returncode == 0, f"{notebook.name} failed on the real FastChat front:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
