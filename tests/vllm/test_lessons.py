"""Every lesson against the real engine (vLLM serving the tiny random LLaVA-NeXT): each notebook as
committed runs top to bottom under nbval, and every exercise's solutions pass their self-checks.

The tiny model answers gibberish, so these runs prove that no lesson and no self-check depends on the
configured backend being the practice server. The lessons run three times each (``ROUNDS``).
The engine is the session's one ``vllm_server``; this file sorts before test_real_engine.py, whose
last test stops it. Each lesson's wall time is reported in the run's summary.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
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


#: Each lesson runs this many times (a failure that happens 1 run in 15 cannot hide in one run).
ROUNDS = int(os.environ.get("LABKIT_VLLM_LESSON_ROUNDS", "3"))


def test_every_lesson_runs_under_nbval_on_the_real_engine(vllm_server: VLLMServer, record_timing: Timer,
                                                         tmp_path: Path) -> None:
    """ROUNDS nbval runs over all lessons (every lesson sends requests), at the same time, each in its own
    copy of notebooks/ (a lesson writes files beside itself), all on the session's one engine. Each
    lesson's time comes from the JUnit reports; every round runs, so the summary says how many failed."""
    rounds = []
    started = time.monotonic()
    for round_no in range(1, ROUNDS + 1):
        folder = tmp_path / f"round-{round_no}"
        shutil.copytree(NOTEBOOKS, folder)
        report = tmp_path / f"nbval-{round_no}.xml"
        log = (tmp_path / f"nbval-{round_no}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=180", "-p", "no:cacheprovider",
             "-o", "addopts=", "-q", f"--junitxml={report}", *(str(folder / f"{lesson}.ipynb") for lesson in LESSONS)],
            cwd=folder, env=_engine_env(vllm_server), stdout=log, stderr=subprocess.STDOUT, text=True)
        rounds.append((round_no, proc, report, log))
    per_lesson: dict[str, float] = {}
    failed: list[str] = []
    for round_no, proc, report, log in rounds:
        try:
            code = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        if report.is_file():
            for case in ElementTree.parse(report).iter("testcase"):
                found = re.search(r"\d\d-[a-z0-9-]+", case.get("classname", "") + " " + case.get("name", ""))
                lesson = found.group() if found else "?"
                per_lesson[lesson] = per_lesson.get(lesson, 0.0) + float(case.get("time", 0))
        if code != 0:
            failed.append(f"round {round_no}:\n" + Path(log.name).read_text()[-4000:])
    record_timing(f"nbval, all lessons on vLLM, {ROUNDS} rounds at once", time.monotonic() - started)
    for lesson, seconds in sorted(per_lesson.items()):
        record_timing(f"nbval {lesson} on vLLM (cells, {ROUNDS} rounds)", seconds)
    assert not failed, f"{len(failed)} of {ROUNDS} rounds failed\n" + "\n".join(failed)


@pytest.mark.parametrize("exercise", _solutions().EXERCISES, ids=lambda e: f"{e.lesson[:2]}-{e.check}")
def test_solutions_pass_their_self_checks_on_the_real_engine(exercise: object, labkit_on_vllm: VLLMServer,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """The solutions of tests/test_exercise_solutions.py, run as a student would in the lesson's folder,
    with labkit pointed at the engine: every self-check passes. Lesson 06's answers write
    outputs/report.jsonl, so each runs in a folder of its own, as in a student's fresh kernel."""
    solutions = _solutions()
    for n, code in enumerate([exercise.solution, *exercise.also_right]):  # type: ignore[attr-defined]
        if exercise.lesson.startswith("06"):  # type: ignore[attr-defined]
            (tmp_path / f"answer-{n}").mkdir()
            monkeypatch.chdir(tmp_path / f"answer-{n}")
        else:
            monkeypatch.chdir(NOTEBOOKS)
        verdict = solutions.run_direct(exercise, code)
        assert verdict.ok, (code, verdict.problems)
