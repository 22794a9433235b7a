"""The grading's parts that need no child process: finding submissions, the durable gradebook, the
Chinese feedback, the shipped masters (fast; the end-to-end runs are in test_grading.py)."""

from __future__ import annotations

import csv
import json
import re

import pytest

from labkit.grading import GradingError, find_submissions, list_assignments, master_path
from labkit.grading.assignments import ASSIGNMENTS_DIR
from labkit.grading.feedback import failure_line, render
from labkit.grading.gradebook import Gradebook


def test_submissions_in_both_layouts(tmp_path) -> None:
    (tmp_path / "ana.ipynb").write_text("{}")
    (tmp_path / "ben").mkdir()
    (tmp_path / "ben" / "lab.ipynb").write_text("{}")
    (tmp_path / "ben" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "ben" / ".ipynb_checkpoints" / "lab-checkpoint.ipynb").write_text("{}")
    (tmp_path / "cleo").mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        (tmp_path / "cleo" / name).write_text("{}")
    (tmp_path / "notes.txt").write_text("not a submission")
    found = {s.student: s for s in find_submissions(tmp_path)}
    assert sorted(found) == ["ana", "ben", "cleo"]
    assert found["ben"].path == tmp_path / "ben" / "lab.ipynb"          # checkpoints are not submissions
    assert found["cleo"].path is None and "2 notebooks" in found["cleo"].problem
    with pytest.raises(GradingError, match="No submissions folder"):
        find_submissions(tmp_path / "missing")


def test_gradebook_survives_a_cut_row_and_refuses_other_columns(tmp_path) -> None:
    path = tmp_path / "grades.csv"
    with Gradebook(path, ["q1"]) as book:
        book.add({"student": "ana", "q1": "2", "total": "2", "possible": "2", "status": "ok", "reason": ""})
        book.add({"student": "ben", "q1": "0", "total": "0", "possible": "2", "status": "invalid",
                  "reason": "broken JSON, with a comma"})
    with path.open("a", encoding="utf-8") as handle:
        handle.write("cleo,2,2")  # the crash came mid-row
    book = Gradebook(path, ["q1"])
    assert sorted(book.rows) == ["ana", "ben"]
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student"] for r in rows] == ["ana", "ben"] and rows[1]["reason"] == "broken JSON, with a comma"
    with pytest.raises(GradingError, match="other questions"):
        Gradebook(path, ["q1", "q2"])


def test_feedback_shows_public_messages_and_only_hints_of_hidden_tests() -> None:
    message = ("❌ Test case failed\nTrying:\n    assert f(1) == 2, '应当返回 2'\nExpecting nothing\n"
               "Exception raised:\n    Traceback (most recent call last):\n    AssertionError: 应当返回 2\n"
               "Trying:\n    x\nException raised:\n    NameError: name 'x' is not defined\n")
    assert failure_line(message) == "AssertionError: 应当返回 2"  # the first failure, not what followed from it
    text = render("ana", "lab", {"q1": 1.0}, {"q1": 2.0}, ["第 3 个单元格出错：ValueError: no"], "errors", "",
                  {"q1": [{"hidden": False, "passed": True, "hint": "", "points": 1},
                          {"hidden": True, "passed": False, "hint": "隐藏测试：空列表也要处理。", "points": 1}]})
    assert "**总分：1 / 2**" in text and "q1：1 / 2 分" in text
    assert "✅ 公开测试 1：通过（1 分）" in text and "❌ 隐藏测试 2：隐藏测试：空列表也要处理。" in text
    assert "第 3 个单元格出错：ValueError: no" in text and "有单元格出错" in text


@pytest.mark.parametrize("name", list_assignments())
def test_masters_are_otter_masters_in_chinese_with_public_and_hidden_tests(name: str) -> None:
    path = master_path(name)
    assert path.parent == ASSIGNMENTS_DIR
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert sources[0].startswith("# ASSIGNMENT CONFIG") and "学习目标" in sources[1]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    questions = [s for s in sources if s.startswith("# BEGIN QUESTION")]
    assert len(questions) >= 3
    hidden = sum(bool(re.search(r"^hidden: true$", s, re.M)) for s in sources)
    public = sum(bool(re.search(r"^hidden: false$", s, re.M)) for s in sources)
    assert hidden >= len(questions) and public >= len(questions)  # each question has both kinds
    for s in sources:
        if "failure_message" in s:
            assert re.search(r"[\u4e00-\u9fff]", s.split("failure_message", 1)[1])  # hints in Chinese


def test_links_are_never_graded_as_submissions(tmp_path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "bob.ipynb").write_text("{}")
    (subs / "mallory.ipynb").symlink_to(master_path("multimodal-request"))  # the master: full marks if followed
    (subs / "eve.ipynb").symlink_to("bob.ipynb")                            # another student's work
    (subs / "zed").mkdir()
    (subs / "zed" / "lab.ipynb").symlink_to("/dev/zero")                    # a reader that never ends
    (subs / "dan").symlink_to(subs / "bob.ipynb")
    found = {s.student: s for s in find_submissions(subs)}
    assert found["bob"].path == subs / "bob.ipynb"
    for student in ("mallory", "eve", "dan"):
        assert found[student].path is None and "symbolic link" in found[student].problem
    assert "zed" not in found or found["zed"].path is None


def test_feedback_files_of_different_students_never_collide() -> None:
    from labkit.grading.grade import _feedback_name

    names = [_feedback_name(s) for s in ("a b", "a_b", "a+b", "_x_", "x", "..", "student")]
    assert len(set(names)) == len(names), names
    assert _feedback_name("s001") == "s001.md"
