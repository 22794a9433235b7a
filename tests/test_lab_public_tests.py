"""The graded labs' public tests reject the mistakes their questions name, each with its own Chinese
sentence, and a failing ``grader.check`` shows that sentence first, in a few lines (labkit's brief
display of otter's result). The labs' mutation scores are `make mutants`' (scripts/mutants.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lab_catalog import MISTAKES, Mistake, labs, mistaken, read_lab, run_question

CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_PRACTICE_FAST", "1")
    monkeypatch.setenv("LABKIT_QUIET", "1")


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: f"{m.assignment}-{m.question}-{m.name}")
def test_a_named_mistake_fails_a_public_test_that_names_it(mistake: Mistake, tmp_path: Path) -> None:
    results = run_question(read_lab(mistake.assignment), mistake.question, mistaken(mistake), folder=str(tmp_path))
    failed = [(case, error) for case, error in results if error and not case.hidden]
    assert failed, f"{mistake.name}: every public test passed"
    case, error = failed[0]
    assert mistake.says in case.message and CHINESE.search(case.message), (case.message, error)


@pytest.mark.parametrize("lab", labs(), ids=lambda lab: lab.assignment)
def test_every_solution_passes_every_test_and_every_public_test_has_its_sentence(lab: object,
                                                                                 tmp_path: Path) -> None:
    for n, question in enumerate(lab.questions):  # type: ignore[attr-defined]
        for k, code in enumerate([question.solution, *question.also_right]):
            folder = tmp_path / f"{n}-{k}"
            folder.mkdir()
            failed = [(c.message, e) for c, e in run_question(lab, question.name, code, folder=str(folder)) if e]
            assert not failed, (question.key, k, failed)
        for case in question.tests:
            assert case.message and CHINESE.search(case.message), (question.key, case.code[:80])
            if case.hidden:
                assert case.message.startswith("隐藏测试"), case.message


def test_a_failing_check_shows_its_sentence_first_in_a_few_lines(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """otter's own grader.check on a student's wrong answer, displayed in an IPython shell where the
    lab's setup cell ran brief_checks(): the sentence comes first, the doctest transcript is folded."""
    otter = pytest.importorskip("otter")
    from grading_support import Maker
    from IPython.core.interactiveshell import InteractiveShell

    from labkit.grading import brief_checks

    mistake = next(m for m in MISTAKES if m.assignment == "multimodal-request" and m.question == "q3")
    student = Maker(mistake.assignment, tmp_path).student
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{mistake.assignment}.ipynb").write_text(json.dumps(student, ensure_ascii=False), encoding="utf-8")
    lab = read_lab(mistake.assignment)
    ns: dict[str, object] = {"__name__": "__main__"}
    exec(lab.setup, ns)
    for question in lab.questions:
        exec(mistaken(mistake) if question.name == mistake.question else question.solution, ns)
    result = otter.Notebook(f"{mistake.assignment}.ipynb").check(mistake.question, global_env=ns)

    shell = InteractiveShell.instance()
    try:
        assert brief_checks()
        shown = shell.display_formatter.format(result)[0]["text/html"]
    finally:
        InteractiveShell.clear_instance()
    brief = shown.split("<details", 1)[0]
    assert brief.count("<p") <= 6, brief
    first_failure = brief.split("❌", 2)[2]
    assert first_failure.split("</p>", 1)[0].endswith("不能用 split 去掉。"), brief
    assert "Traceback" not in brief and "Trying:" not in brief, brief
    assert "Traceback" in shown.split("<details", 1)[1]  # the full report is still there, folded
