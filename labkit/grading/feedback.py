"""Per-student feedback, in Chinese like the assignments themselves.

A public test that failed shows the test's own message (the student can run it); a hidden test
shows only its ``failure_message`` hint, never its code. Cells that raised or ran out of time are
listed with the exception's type and message, and a run stopped as a whole says why.

Example:
    >>> text = render("ana", "multimodal-request", {"q1": 3.0}, {"q1": 4.0}, [], "ok", "", {"q1": [
    ...     {"hidden": True, "passed": False, "hint": "隐藏测试：JPEG 也要转成 PNG。", "points": 1}]})
    >>> "q1：3 / 4 分" in text and "JPEG" in text
    True
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["STATUS_ZH", "failure_line", "render"]

STATUS_ZH = {
    "ok": "笔记本从头到尾运行完毕。",
    "errors": "笔记本运行完毕，但有单元格出错（见下）。出错的单元格没有定义出的内容，相关测试得 0 分。",
    "timeout": "笔记本运行超过了时间限制，被停止；本次提交所有题目记 0 分。请检查死循环或一直等待的代码。",
    "crashed": "笔记本运行时进程意外退出（例如超出内存限制或主动退出），本次提交所有题目记 0 分。",
    "invalid": ("提交的文件不是有效的 Jupyter 笔记本（例如 JSON 损坏），无法运行，所有题目记 0 分。"
                "请重新保存后提交 .ipynb 文件。"),
}

_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Timeout|Interrupt|Exit))(?::\s*(.*))?$")


def failure_line(message: str) -> str:
    """The exception line of a failed doctest's report (what the student's public test said).

    Example:
        >>> failure_line("Trying: ...\\nException raised:\\n    AssertionError: 应当返回列表\\n")
        'AssertionError: 应当返回列表'
    """
    for line in message.splitlines():  # the first exception: later ones often follow from it
        match = _ERROR_LINE.match(line)
        if match:
            return line.strip()
    return "输出与期望不一致"


def _number(value: float) -> str:
    return f"{value:g}"


def render(student: str, assignment: str, scores: dict[str, float], possible: dict[str, float],
           cell_errors: list[str], status: str, detail: str, cases: dict[str, list[dict[str, Any]]]) -> str:
    """The Markdown feedback for one student."""
    total, out_of = sum(scores.values()), sum(possible.values())
    lines = [f"# 作业 {assignment} 的评分反馈：{student}", "",
             f"**总分：{_number(total)} / {_number(out_of)}**", "", STATUS_ZH.get(status, status)]
    if detail:
        lines += ["", f"说明：{detail}"]
    lines += ["", "## 各题得分", ""]
    for question in possible:
        lines.append(f"- {question}：{_number(scores.get(question, 0.0))} / {_number(possible[question])} 分")
        for number, case in enumerate(cases.get(question, []), start=1):
            kind = "隐藏测试" if case["hidden"] else "公开测试"
            if case["passed"]:
                lines.append(f"  - ✅ {kind} {number}：通过（{_number(case['points'])} 分）")
            else:
                hint = case.get("hint") or ("隐藏测试未通过" if case["hidden"] else "未通过")
                lines.append(f"  - ❌ {kind} {number}：{hint}")
    if cell_errors:
        lines += ["", "## 出错的单元格", ""] + [f"- {entry}" for entry in cell_errors]
    lines += ["", "公开测试可以在笔记本里用 `grader.check(\"qN\")` 自己运行；隐藏测试只给出提示。", ""]
    return "\n".join(lines)
