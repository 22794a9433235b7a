"""`labkit grade` for real: generated submissions (full, partial, broken, raising, hanging, hostile)
graded in sandboxed children against their own practice servers, then the gradebook CSV and the
Chinese feedback checked as a TA and a student would read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("otter", reason="grading needs otter-grader: pip install -e '.[test]'")

from grading_support import Maker, hostile_cells, rows, write  # noqa: E402

from labkit.cli import main as cli_main  # noqa: E402
from labkit.grading import Limits, grade_folder, isolation, list_assignments, write_student_version  # noqa: E402

pytestmark = pytest.mark.timeout(240)

ASSIGNMENT = "multimodal-request"


@pytest.fixture(scope="module")
def make(tmp_path_factory: pytest.TempPathFactory) -> Maker:
    return Maker(ASSIGNMENT, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, make: Maker) -> dict[str, object]:
    """One grading run over a mixed folder (module-scoped: otter assign and the children are slow)."""
    root = tmp_path_factory.mktemp("grading")
    subs, book = root / "submissions", root / "grades.csv"
    write(subs / "ana.ipynb", make.full())
    write(subs / "dora" / "my work.ipynb", make.full())                     # the <student>/<any>.ipynb layout
    write(subs / "ben.ipynb", make.partial(["build_messages", "strip_role_prefix"]))
    write(subs / "cleo.ipynb", '{"cells": [ {"cell_type": "code", "source": "x = 1"')  # cut-off JSON
    write(subs / "eve.ipynb", make.with_cell_before(
        "collect_stream", "raise ValueError('boom before q2')\ndef collect_stream(chunks):\n    return 'never'",
        replace=True))
    write(subs / "finn.ipynb", make.with_cell_before("strip_role_prefix", "while True:\n    pass", replace=True))
    cells = hostile_cells(ASSIGNMENT, book, subs / "ana.ipynb", subs)
    if isolation() == "process":
        cells = [c for c in cells if "fork" not in c]  # no process limit without a grading user or a user namespace
    write(subs / "mallory.ipynb", make.with_cells_at_end(cells))
    original = (subs / "ana.ipynb").read_bytes()
    limits = Limits(wall=150.0, cell=6.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABKIT_LANG", "en")  # the CSV's reasons are asserted in English
        summary = grade_folder(ASSIGNMENT, subs, book, limits=limits, jobs=2, progress=False)
    return {"root": root, "subs": subs, "book": book, "summary": summary, "original": original, "limits": limits}


def test_scores_and_statuses(graded: dict[str, object]) -> None:
    table = rows(graded["book"])  # type: ignore[arg-type]
    assert sorted(table) == ["ana", "ben", "cleo", "dora", "eve", "finn", "mallory"]
    assert (table["ana"]["total"], table["ana"]["possible"], table["ana"]["status"]) == ("16", "16", "ok")
    assert table["dora"]["total"] == "16"
    ben = table["ben"]
    assert (ben["q1"], ben["q2"], ben["q3"], ben["q4"], ben["total"]) == ("4", "0", "4", "0", "8")
    assert table["cleo"]["status"] == "invalid" and "broken JSON" in table["cleo"]["reason"]
    assert table["cleo"]["total"] == "0"
    eve = table["eve"]
    assert (eve["q1"], eve["q2"], eve["q3"], eve["status"]) == ("4", "0", "4", "errors")
    assert "1 cell(s)" in eve["reason"]
    finn = table["finn"]
    assert (finn["q1"], finn["q2"], finn["q3"], finn["q4"], finn["status"]) == ("4", "4", "0", "0", "errors")


def test_partial_credit_inside_a_question(graded: dict[str, object]) -> None:
    """Each test case is scored on its own, and the feedback says which failed and why."""
    feedback = (graded["root"] / "grades-feedback" / "ben.md").read_text(encoding="utf-8")  # type: ignore[operator]
    assert "**总分：8 / 16**" in feedback
    assert "q1：4 / 4 分" in feedback and "q2：0 / 4 分" in feedback
    assert "❌ 公开测试 1：AssertionError: 三个数据块" in feedback  # the public test's own message
    assert "❌ 隐藏测试 3：隐藏测试：要跳过内容为空或 None 的数据块" in feedback  # a hidden test: only its hint
    assert ">>>" not in feedback and "_usage" not in feedback  # never the hidden test's code


def test_feedback_names_what_failed(graded: dict[str, object]) -> None:
    folder = graded["root"] / "grades-feedback"  # type: ignore[operator]
    eve = (folder / "eve.md").read_text(encoding="utf-8")
    assert "ValueError: boom before q2" in eve and "有单元格出错" in eve
    finn = (folder / "finn.md").read_text(encoding="utf-8")
    assert "运行超时，被中断" in finn
    cleo = (folder / "cleo.md").read_text(encoding="utf-8")
    assert "不是有效的 Jupyter 笔记本" in cleo and "**总分：0 / 16**" in cleo


@pytest.mark.skipif(isolation() == "process", reason="needs Linux namespaces (root or user namespaces)")
def test_hostile_submission_is_contained(graded: dict[str, object]) -> None:
    table = rows(graded["book"])  # type: ignore[arg-type]
    mallory = table["mallory"]
    assert mallory["total"] == "16" and mallory["status"] == "errors"  # its real answers still count
    assert "printed" in mallory["reason"]  # the output flood was cut, and said so
    feedback = (graded["root"] / "grades-feedback" / "mallory.md").read_text(encoding="utf-8")  # type: ignore[operator]
    errors = [line for line in feedback.split("## 出错的单元格", 1)[1].splitlines() if line.startswith("- ")]
    hostile = len(hostile_cells(ASSIGNMENT, Path("g"), Path("o"), Path("s"))) - 1  # all but the print flood
    if isolation() == "process":
        hostile -= 1
    assert len(errors) == hostile, errors                      # every hostile cell was stopped …
    text = "\n".join(errors)
    if "HEAD" in errors[0]:
        errors = errors[1:]                                    # … the checkout's git history is not there
    assert "multimodal-request.ipynb" in errors[0]             # … the master notebook is not there
    assert "no autograder found" in errors[1]                  # … nor the hidden tests anywhere on disk
    assert "grades.csv" in errors[2] or "gradebook hidden" in errors[2]  # … nor the gradebook
    assert "grades.csv" in errors[3]                           # … which cannot be deleted
    assert "ana.ipynb" in errors[4]                            # … nor another submission
    assert "planted.ipynb" in errors[5]
    assert "Network is unreachable" in errors[6] or "OSError" in errors[6]
    assert "stdin is empty" in text                            # the tests are not on its standard input either
    assert "MemoryError" in text
    assert "BlockingIOError" in text                           # the fork bomb hit the process limit
    # nothing outside changed: the gradebook has every row, the other submission is intact, nothing planted
    assert len(table) == 7
    assert (graded["subs"] / "ana.ipynb").read_bytes() == graded["original"]  # type: ignore[operator]
    assert not (graded["subs"] / "planted.ipynb").exists()  # type: ignore[operator]


def test_summary_and_resume(graded: dict[str, object]) -> None:
    summary = graded["summary"]
    rates = summary.pass_rates()  # type: ignore[attr-defined]
    assert set(rates) == {"q1", "q2", "q3", "q4"}
    assert rates["q1"][0] == pytest.approx(6 / 7)  # everyone but cleo (broken JSON)
    assert rates["q2"] == (pytest.approx(4 / 7), pytest.approx(16 / 28))  # ana, dora, finn, mallory
    report = summary.report()  # type: ignore[attr-defined]
    assert "q1" in report and "7 graded now" in report
    book: Path = graded["book"]  # type: ignore[assignment]
    with book.open("a", encoding="utf-8") as handle:
        handle.write("zed,4,4,4")  # a row cut off by a crash: dropped on resume
    again = grade_folder(ASSIGNMENT, graded["subs"], book, limits=graded["limits"], progress=False)  # type: ignore[arg-type]
    assert again.skipped == 7 and again.graded == []
    text = book.read_text(encoding="utf-8")
    assert "zed" not in text and text.count("\n") == 8


def test_hard_hang_is_killed_at_the_time_limit(tmp_path: Path, make: Maker) -> None:
    subs = tmp_path / "subs"
    write(subs / "hang.ipynb", make.with_cells_at_end(
        ["import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"]))
    summary = grade_folder(ASSIGNMENT, subs, tmp_path / "g.csv", limits=Limits(wall=10.0, cell=5.0), progress=False)
    row = rows(tmp_path / "g.csv")["hang"]
    assert row["status"] == "timeout" and row["total"] == "0" and "time limit of 10 s" in row["reason"]
    assert summary.graded[0].seconds < 40
    assert "超过了时间限制" in (tmp_path / "g-feedback" / "hang.md").read_text(encoding="utf-8")


def test_cli_lists_writes_and_grades(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["assignment", "--list"]) == 0
    assert capsys.readouterr().out.split() == list_assignments() == ["batch-evaluation", "multimodal-request"]
    assert cli_main(["assignment", "batch-evaluation", str(tmp_path / "handout")]) == 0
    handout = json.loads((tmp_path / "handout" / "batch-evaluation.ipynb").read_text(encoding="utf-8"))
    text = json.dumps(handout, ensure_ascii=False)
    assert "BEGIN SOLUTION" not in text and "hidden-answers.jsonl" not in text and '"hidden": true' not in text
    assert "grader.check(\\\"q1\\\")" in text and "\"hidden\": false" in text  # the public tests travel with it
    with pytest.raises(Exception, match="never overwritten"):
        write_student_version("batch-evaluation", tmp_path / "handout")
    write(tmp_path / "subs" / "empty.ipynb", handout)
    write(tmp_path / "subs" / "full.ipynb", Maker("batch-evaluation", tmp_path).full())
    capsys.readouterr()
    code = cli_main(["grade", "batch-evaluation", str(tmp_path / "subs"), "-o", str(tmp_path / "out.csv"),
                     "--jobs", "2"])
    done = capsys.readouterr()
    assert code == 0, done.err[-2000:]
    table = rows(tmp_path / "out.csv")
    assert table["empty"]["total"] == "0" and table["empty"]["status"] == "ok"
    assert (table["full"]["total"], table["full"]["possible"]) == ("16", "16")
    assert "full marks" in done.out or "满分" in done.out
