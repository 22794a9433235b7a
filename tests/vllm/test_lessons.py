"""Every lesson against the real engine (vLLM serving the tiny random LLaVA-NeXT): each notebook as
committed runs top to bottom under nbval, and every exercise's solutions pass their self-checks.

The tiny model answers gibberish, so these runs prove that no lesson and no self-check depends on the
configured backend being the practice server. The engine is the session's one ``vllm_server``; this
file sorts before test_real_engine.py, whose last test stops it. Each lesson's wall time is reported
in the run's summary.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from xml.etree import ElementTree

import pytest

from labkit.serve import VLLMServer

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
LESSONS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
Timer = Callable[[str, float], None]


def _solutions() -> ModuleType:
    """tests/test_exercise_solutions.py: the solutions, and how a solved lesson is run and read."""
    spec = importlib.util.spec_from_file_location("exercise_solutions", REPO / "tests" / "test_exercise_solutions.py")
    assert spec and spec.loader
    if "exercise_solutions" in sys.modules:
        return sys.modules["exercise_solutions"]
    module = importlib.util.module_from_spec(spec)
    sys.modules["exercise_solutions"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _engine_env(server: VLLMServer) -> dict[str, str]:
    """The environment a student pointed at this engine would have (practice servers a lesson starts
    itself keep the fast pacing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    return {**env, "LABKIT_BASE_URL": server.base_url, "LABKIT_PRACTICE_FAST": "1", "LABKIT_QUIET": "1"}


def test_every_lesson_runs_under_nbval_on_the_real_engine(vllm_server: VLLMServer, record_timing: Timer,
                                                         tmp_path: Path) -> None:
    """One nbval run over all lessons (one pytest start-up); each lesson's time comes from its JUnit report."""
    report = tmp_path / "nbval.xml"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=120", "-p", "no:cacheprovider",
         "-o", "addopts=", "-q", f"--junitxml={report}", *(str(NOTEBOOKS / f"{lesson}.ipynb") for lesson in LESSONS)],
        cwd=REPO, env=_engine_env(vllm_server), capture_output=True, text=True, timeout=900, check=False)
    record_timing("nbval, all lessons on vLLM", time.monotonic() - started)
    if report.is_file():
        per_lesson: dict[str, float] = {}
        for case in ElementTree.parse(report).iter("testcase"):
            found = re.search(r"\d\d-[a-z0-9-]+", case.get("classname", "") + " " + case.get("name", ""))
            lesson = found.group() if found else "?"
            per_lesson[lesson] = per_lesson.get(lesson, 0.0) + float(case.get("time", 0))
        for lesson, seconds in sorted(per_lesson.items()):
            record_timing(f"nbval {lesson} on vLLM (cells)", seconds)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


@pytest.mark.parametrize("exercise", _solutions().EXERCISES, ids=lambda e: f"{e.lesson[:2]}-{e.check}")
def test_solutions_pass_their_self_checks_on_the_real_engine(exercise: object, labkit_on_vllm: VLLMServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The solutions of tests/test_exercise_solutions.py, run as a student would in the lesson's folder,
    with labkit pointed at the engine: every self-check passes."""
    monkeypatch.chdir(NOTEBOOKS)
    solutions = _solutions()
    for code in [exercise.solution, *exercise.also_right]:  # type: ignore[attr-defined]
        verdict = solutions.run_direct(exercise, code)
        assert verdict.ok, (code, verdict.problems)
