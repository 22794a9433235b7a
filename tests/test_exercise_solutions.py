"""Every lesson's self-checks tell right from wrong, and say what is wrong.

tests/exercise_catalog.py holds, for each exercise, its solutions (files under tests/mutants/solutions/:
each real task has more than one) and the plausible wrong answers a student writes, each with the
diagnosis it must get. The checks are called directly on all of them (✅ for the right ones, ❌ with
that diagnosis, in English and in Chinese, for the wrong ones), and each lesson is executed with its
exercise cells filled in with the solutions (nbclient, the practice server's fast pacing): every
self-check then prints ✅. An exercise cell run after a kernel restart names the step to run first.
tests/vllm/test_lessons.py runs the solved lessons against a real vLLM engine too; scripts/mutants.py
tests the checks with mutants of the solutions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from exercise_catalog import EXERCISES, Exercise, Wrong, run_direct
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

__all__ = ["EXERCISES", "Exercise", "run_direct"]

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ANSWER_START = "# ↓ 你的答案"  # the first line of the student's part of an exercise cell


LESSONS = sorted({e.lesson for e in EXERCISES})


def _ids(e: Exercise) -> str:
    return e.name


@pytest.fixture
def in_notebooks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(NOTEBOOKS)
    monkeypatch.setenv("LABKIT_PRACTICE_FAST", "1")
    monkeypatch.setenv("LABKIT_QUIET", "1")


def _in_lesson_folder(exercise: Exercise, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Lesson 06's answers write files (outputs/report.jsonl): they run in a folder of their own."""
    if exercise.lesson.startswith("06"):
        monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("exercise", EXERCISES, ids=_ids)
def test_right_answers_pass(exercise: Exercise, in_notebooks: None, monkeypatch: pytest.MonkeyPatch,
                            tmp_path: Path) -> None:
    for n, code in enumerate([exercise.solution, *exercise.also_right]):
        (tmp_path / f"right-{n}").mkdir()  # each answer in a fresh folder, as in a student's own kernel
        _in_lesson_folder(exercise, monkeypatch, tmp_path / f"right-{n}")
        verdict = run_direct(exercise, code)
        assert verdict.ok, (code, verdict.problems)


def _problems(exercise: Exercise, wrong: Wrong, lang: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("LABKIT_LANG", lang)
    verdict = run_direct(exercise, wrong.code)
    assert not verdict.ok, f"a wrong answer passed {exercise.check}:\n{wrong.code}"
    assert verdict.problems and all(isinstance(p, str) and p.strip() for p in verdict.problems)
    return verdict.problems


@pytest.mark.parametrize("exercise", EXERCISES, ids=_ids)
def test_wrong_answers_fail_with_the_right_diagnosis(exercise: Exercise, in_notebooks: None,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each wrong answer is rejected; its first problem names the mistake (English and Chinese) and
    never quotes a line of the solution."""
    assert len(exercise.wrong) >= 2
    solution_lines = [line.strip() for line in exercise.solution.splitlines() if len(line.strip()) > 12]
    for n, wrong in enumerate(exercise.wrong):
        (tmp_path / f"en-{n}").mkdir()
        _in_lesson_folder(exercise, monkeypatch, tmp_path / f"en-{n}")
        english = _problems(exercise, wrong, "en", monkeypatch)
        assert wrong.en in english[0], (wrong.code, english)
        assert not any(line in p for line in solution_lines for p in english), (wrong.code, english)
        if wrong.zh:
            (tmp_path / f"zh-{n}").mkdir()
            _in_lesson_folder(exercise, monkeypatch, tmp_path / f"zh-{n}")
            chinese = _problems(exercise, wrong, "zh", monkeypatch)
            assert wrong.zh in chinese[0] and any("\u4e00" <= ch <= "\u9fff" for ch in chinese[0]), \
                (wrong.code, chinese)


def exercise_cells(nb: nbformat.NotebookNode, check: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and f"ex.{check}(" in c.source]


def fill_in(nb: nbformat.NotebookNode, exercise: Exercise, code: str) -> None:
    """Replace the student's part of the exercise's cell (from ANSWER_START to the check) with ``code``."""
    cells = exercise_cells(nb, exercise.check)
    assert len(cells) == 1, f"{exercise.lesson}: one cell should call ex.{exercise.check}(…)"
    lines = cells[0].source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(ANSWER_START))
    end = next(i for i, line in enumerate(lines) if line.startswith(f"ex.{exercise.check}("))
    cells[0].source = "\n".join(lines[:start] + [code.strip("\n"), ""] + lines[end:])


def solved(lesson: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    for exercise in EXERCISES:
        if exercise.lesson == lesson:
            fill_in(nb, exercise, exercise.solution)
    return nb


def verdicts_printed(nb: nbformat.NotebookNode) -> list[str]:
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            lines += [line for line in output.get("text", "").splitlines() if line.startswith(("✅", "❌"))]
    return lines


def execute(nb: nbformat.NotebookNode, env: dict[str, str] | None = None, timeout: int = 120,
            path: Path = NOTEBOOKS) -> None:
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def assert_all_passed(lesson: str, nb: nbformat.NotebookNode) -> None:
    printed = verdicts_printed(nb)
    expected = sum(1 for e in EXERCISES if e.lesson == lesson)
    assert len(printed) == expected and all(line.startswith("✅") for line in printed), printed


@pytest.mark.parametrize("lesson", LESSONS)
def test_solved_lesson_prints_only_passes(lesson: str, tmp_path: Path) -> None:
    nb = solved(lesson)
    shutil.copytree(NOTEBOOKS / "images", tmp_path / "images")  # a student's fresh folder: no earlier outputs/
    execute(nb, {"LABKIT_PRACTICE_FAST": "1"}, path=tmp_path)
    assert_all_passed(lesson, nb)


@pytest.mark.parametrize("lesson", LESSONS)
def test_unsolved_cells_hold_no_answer(lesson: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    for exercise in (e for e in EXERCISES if e.lesson == lesson):
        (cell,) = exercise_cells(nb, exercise.check)
        assert ANSWER_START in cell.source
        student_part = cell.source.split(ANSWER_START, 1)[1].split(f"ex.{exercise.check}(", 1)[0]
        for line in exercise.solution.strip().splitlines():
            if len(line.strip()) > 12 and not line.lstrip().startswith(("def ", "import ", "from ")):
                assert line.strip() not in student_part, f"{lesson}: the answer is in the cell: {line}"


@pytest.mark.parametrize(("lesson", "check", "step"), [("00-setup", "check_model_name", "第 2 步"),
                                                      ("05-batch-evaluation", "check_my_keywords", "第 4 步")])
def test_an_exercise_cell_after_a_restart_names_the_step_to_run_first(lesson: str, check: str, step: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    nb.cells = exercise_cells(nb, check)          # a fresh kernel: nothing above this cell has run
    with pytest.raises(CellExecutionError) as info:
        execute(nb, {"LABKIT_PRACTICE_FAST": "1"}, timeout=60)
    assert "StepNotRun" in str(info.value) and step in str(info.value), str(info.value)[-800:]


def test_lesson_01_stub_server_is_quiet_when_a_reader_hangs_up(capfd: pytest.CaptureFixture[str]) -> None:
    """A reader that closes the connection at once (or crashes mid-stream) gets its ❌, and no traceback of
    the checker's own stand-in server (BrokenPipeError, ConnectionResetError) is printed above it."""
    import httpx

    from labkit.exercises import lesson01

    def hang_up(base_url: str, api_key: str, model: str, question: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 8, "stream": True}
        with httpx.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {api_key}"}):
            return ""  # leaves before reading: the server's writes meet a closed socket

    verdict = lesson01.check_raw_reader(hang_up)
    out, err = capfd.readouterr()
    assert not verdict.ok and out.startswith("❌"), out
    assert "Traceback" not in out + err and "BrokenPipe" not in out + err and "ConnectionReset" not in out + err, err


def test_a_model_name_typed_in_is_seen_in_a_real_kernel() -> None:
    """check_model_name reads how model_name was made from the cell's text, which IPython keeps: in a
    real kernel, the right value typed in as a string is a ❌ that says so."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import labkit\nsettings = labkit.load_settings()"),
                nbformat.v4.new_code_cell("from labkit.exercises import lesson00 as ex\n" + ANSWER_START + "\n"
                                          "model_name = settings.model.lower()\nmodel_name = \"llava-v1.6-34b\"\n\n"
                                          "ex.check_model_name(model_name)")]
    execute(nb, {"LABKIT_PRACTICE_FAST": "1", "LABKIT_LANG": "en"}, timeout=60)
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert printed.startswith("❌") and "typed the name in" in printed, printed
