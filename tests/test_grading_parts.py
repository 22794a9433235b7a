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
    (tmp_path / "ana.py").write_text("print('my answers')")
    (tmp_path / "dan").mkdir()
    found = {s.student: s for s in find_submissions(tmp_path)}
    assert sorted(found) == ["ana", "ana.py", "ben", "cleo", "dan", "notes"]  # every entry gets a row
    assert found["notes"].path is None and "not a notebook (notes.txt)" in found["notes"].problem
    assert found["ana.py"].path is None and found["ana.py"].file == "ana.py" and found["ana"].file == "ana.ipynb"
    assert found["dan"].path is None and "no notebook" in found["dan"].problem
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
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["student"] for r in rows] == ["ana", "ben"] and rows[1]["reason"] == "broken JSON, with a comma"
    with pytest.raises(GradingError, match="other questions"):
        Gradebook(path, ["q1", "q2"])


def test_gradebook_opens_in_a_spreadsheet_without_running_anything(tmp_path) -> None:
    """Ids from file names go into cells: formulas are neutralised as OWASP recommends, bidi controls
    removed, the original name kept; UTF-8 with a BOM (Excel), rows sorted by student; resume still
    finds every student by the id it had."""
    subs = tmp_path / "subs"
    subs.mkdir()
    names = ["=HYPERLINK(\"evil.example\",\"x\")", "@SUM(A1)", "-2+3", "+1", "王芳", "ab\u202etxt.exe"]
    for name in names:
        (subs / f"{name}.ipynb").write_text("{}")
    found = {s.student: s for s in find_submissions(subs)}
    assert "abtxt.exe" in found and found["abtxt.exe"].file == "ab\u202etxt.exe.ipynb"
    path = tmp_path / "grades.csv"
    with Gradebook(path, ["q1"]) as book:
        for sub in reversed(list(found.values())):
            book.add({"student": sub.student, "file": sub.file, "q1": "1", "total": "1", "possible": "1",
                      "status": "ok", "reason": "=cmd|' /C calc'!A0"})
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode("utf-8")) and raw.count("\ufeff".encode("utf-8")) == 1
    with path.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.DictReader(handle))
    for row in table:
        for column in ("student", "file", "reason"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r")), row
            assert "\u202e" not in row["student"]
    assert [r["student"] for r in table] == sorted(r["student"] for r in table)
    assert {r["student"] for r in table} >= {"'=HYPERLINK(\"evil.example\",\"x\")", "'@SUM(A1)", "'-2+3", "王芳"}
    assert sorted(Gradebook(path, ["q1"]).rows) == sorted(found)  # resume matches the ids as they were


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


def test_roster_exports_for_canvas_and_moodle(tmp_path) -> None:
    from labkit.grading.roster import Roster, write_export

    grades = {"s001": {"total": "16", "q1": "4", "status": "ok"},
              "wang.fang": {"total": "8", "q1": "4", "status": "ok"},
              "=cmd|calc": {"total": "0", "q1": "0", "status": "invalid"}}
    canvas = tmp_path / "canvas.csv"
    canvas.write_text("\ufeffStudent,ID,SIS User ID,SIS Login ID,Section\n    Points Possible,,,,\n"
                      "Ana Li,101,s001,ali,A\n王芳,102,s002,wang.fang,A\nBen Ko,103,s003,bko,B\n", encoding="utf-8")
    roster = Roster.load(canvas, "canvas")
    out = tmp_path / "grades-canvas.csv"
    unmatched = write_export(roster, grades, "multimodal-request", ["q1"], out)
    assert unmatched == ["=cmd|calc"]
    raw = out.read_bytes()
    assert raw.startswith("\ufeff".encode("utf-8"))
    with out.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "multimodal-request"]
    assert [r[0] for r in table[1:]] == ["    Points Possible", "Ana Li", "王芳", "Ben Ko"]  # the roster's order
    assert [r[-1] for r in table[2:]] == ["16", "8", ""]  # matched by SIS User ID and by SIS Login ID
    moodle = tmp_path / "moodle.csv"
    moodle.write_text("First name,Last name,ID number,Username,Email address\n"
                      "Ana,Li,,ana,s001@uni.edu\nFang,Wang,2024002,wfang,wang.fang@uni.edu\n", encoding="utf-8")
    unmatched = write_export(Roster.load(moodle, "moodle"), grades, "lab", ["q1"], tmp_path / "m.csv")
    with (tmp_path / "m.csv").open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    assert [r[-1] for r in table[1:]] == ["16", "8"] and unmatched == ["=cmd|calc"]  # by the email's user part
    with pytest.raises(GradingError, match="--format"):
        Roster.load(moodle, "canvas")


def test_feedback_in_the_students_language() -> None:
    from labkit.grading.feedback import N_, Note

    cases = {"q1": [{"hidden": True, "passed": False, "hint": "", "points": 1, "not_run": True}]}
    reason = [Note(N_("{count} cell(s) raised or ran out of time"), count=1)]
    zh = render("ana", "lab", {"q1": 0.0}, {"q1": 1.0}, ["第 1 个单元格出错：X"], "errors", reason, cases, "zh")
    en = render("ana", "lab", {"q1": 0.0}, {"q1": 1.0}, ["cell 1 raised: X"], "errors", reason, cases, "en")
    assert "说明：1 个单元格出错或超时" in zh and "测试没有运行" in zh and "**总分：0 / 1**" in zh
    assert "Note: 1 cell(s) raised or ran out of time" in en and "did not run" in en and "**Total: 0 / 1**" in en
