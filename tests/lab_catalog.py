"""The graded labs' questions as data, read from their master notebooks (labkit/assignments/*.ipynb):
the setup cell, each question's reference solution and its test cases (public and hidden, with the
sentence a failing one shows), plus the mistakes each question's text names, which its public tests
must reject. Used by scripts/mutants.py (mutants of each solution against the question's tests) and by
tests/test_lab_public_tests.py.

A question is run in process, as otter runs it when grading: the setup cell, every question's
solution in order (the one under test replaced), then the question's test cases one after the other in
the same namespace.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "labkit" / "assignments"
SOLUTIONS = Path(__file__).resolve().parent / "mutants" / "solutions"


@dataclass
class TestCase:
    code: str
    hidden: bool
    message: str


@dataclass
class Question:
    assignment: str
    name: str
    solution: str
    tests: list[TestCase] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"lab-{self.assignment}-{self.name}"

    @property
    def also_right(self) -> list[str]:
        return [p.read_text(encoding="utf-8") for p in sorted(SOLUTIONS.glob(f"{self.key}.alt*.py"))]


@dataclass
class Lab:
    assignment: str
    setup: str
    questions: list[Question]


def _source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


def read_lab(assignment: str) -> Lab:
    """The setup, solutions and tests of one master notebook."""
    cells = json.loads((ASSIGNMENTS / f"{assignment}.ipynb").read_text(encoding="utf-8"))["cells"]
    setup: list[str] = []
    questions: list[Question] = []
    where = ""
    for cell in cells:
        text = _source(cell)
        if cell["cell_type"] == "raw":
            first = text.strip().splitlines()[0] if text.strip() else ""
            if first == "# BEGIN QUESTION":
                name = re.search(r"^name:\s*(\S+)", text, re.M)
                questions.append(Question(assignment, name.group(1) if name else "?", ""))
                where = "question"
            elif first in ("# BEGIN SOLUTION", "# BEGIN TESTS"):
                where = first.split()[-1].lower()
            elif first in ("# END SOLUTION", "# END TESTS"):
                where = "question"
            elif first == "# END QUESTION":
                where = ""
            continue
        if cell["cell_type"] != "code":
            continue
        if where == "" and not questions:
            setup.append(text)
        elif where == "solution":
            questions[-1].solution += text.rstrip("\n") + "\n"
        elif where == "tests":
            config, _, body = text.partition('""" # END TEST CONFIG')
            hidden = re.search(r"^hidden:\s*true", config, re.M) is not None
            message = re.search(r'^failure_message:\s*"(.*)"\s*$', config, re.M)
            questions[-1].tests.append(TestCase(body.lstrip("\n"), hidden, message.group(1) if message else ""))
    return Lab(assignment, "\n".join(setup), questions)


def labs() -> list[Lab]:
    return [read_lab(p.stem) for p in sorted(ASSIGNMENTS.glob("*.ipynb"))]


def run_question(lab: Lab, question: str, code: str, *, folder: str | None = None) -> list[tuple[TestCase, str]]:
    """Run ``code`` as the answer to ``question`` (the other questions answered by their solutions) and
    each of its test cases in order: (test case, "" when it passed or the error it raised)."""
    own = folder is None
    folder = folder or tempfile.mkdtemp(prefix="labkit-lab-")
    previous = os.getcwd()
    results: list[tuple[TestCase, str]] = []
    try:
        os.chdir(folder)
        ns: dict[str, Any] = {"__name__": "__main__"}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exec(compile(lab.setup, f"<{lab.assignment} setup>", "exec"), ns)
            for q in lab.questions:
                exec(compile(code if q.name == question else q.solution, f"<{lab.assignment} {q.name}>", "exec"), ns)
            target = next(q for q in lab.questions if q.name == question)
            for case in target.tests:
                try:
                    _run_like_doctest(case.code, f"<{lab.assignment} {question} test>", ns)
                    results.append((case, ""))
                except Exception as exc:  # a failing test case, as otter counts it
                    results.append((case, f"{type(exc).__name__}: {exc}"))
    finally:
        os.chdir(previous)
        if own:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    return results


def _run_like_doctest(code: str, filename: str, ns: dict[str, Any]) -> None:
    """Run a test case statement by statement as otter's doctest does: a bare expression whose value
    is not None is output the test did not expect, so it fails."""
    import ast

    for statement in ast.parse(code, filename).body:
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), filename, "eval"), ns)
            if value is not None:
                raise AssertionError(f"doctest expected nothing but got {value!r}")
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), filename, "exec"), ns)


@dataclass
class Mistake:
    """A mistake a question's text names: ``find`` → ``replace`` in its solution; the public tests must
    reject it with ``says`` in the failing test's sentence."""

    assignment: str
    question: str
    name: str
    find: str
    replace: str
    says: str


MISTAKES: list[Mistake] = [
    Mistake("batch-evaluation", "q1", "substring matching (red in bored)",
            'found += re.search(r"\\b" + re.escape(k) + r"\\b", answer, re.IGNORECASE) is not None',
            "found += k.lower() in answer.lower()", "bored"),
    Mistake("batch-evaluation", "q1", "case-sensitive matching",
            "answer, re.IGNORECASE) is not None", "answer) is not None", "不区分大小写"),
    Mistake("batch-evaluation", "q2", "failed records ignored (left out)",
            '        if record is None or record.get("status") != "ok":\n            scores[name] = 0.0\n',
            '        if record is None or record.get("status") != "ok":\n            continue\n', "失败的记录"),
    Mistake("batch-evaluation", "q2", "failed records scored like answers",
            'record is None or record.get("status") != "ok"', "record is None", "失败的记录"),
    Mistake("batch-evaluation", "q3", "weak not sorted",
            '"weak": sorted(name for name, score in scores.items() if score < 1)',
            '"weak": [name for name, score in scores.items() if score < 1]', "字母顺序"),
    Mistake("batch-evaluation", "q3", "no ValueError for empty scores",
            '    if not scores:\n        raise ValueError("没有得分可以汇总：先运行评测")\n', "", "ValueError"),
    Mistake("batch-evaluation", "q4", "out deleted on every run (no resume)",
            "    items = labkit.items_from_folder(folder, QUESTION)\n",
            "    items = labkit.items_from_folder(folder, QUESTION)\n    Path(out).unlink(missing_ok=True)\n",
            "续跑"),
    Mistake("multimodal-request", "q2", "no guard for vLLM's usage chunk (choices == [])",
            "        if not chunk.choices:\n            continue\n", "", "usage"),
    Mistake("multimodal-request", "q1", "JPEG bytes labelled as PNG",
            'img.convert("RGB").save(buffer, format="PNG")', 'img.convert("RGB").save(buffer, format="JPEG")',
            "data URL"),
    Mistake("multimodal-request", "q3", "split on the word assistant",
            '    stripped = text.lstrip()\n    if stripped.startswith("assistant\\n"):\n'
            '        return stripped[len("assistant\\n"):].lstrip()\n    return text\n',
            '    return text.split("assistant", 1)[-1].lstrip()\n', "原样返回"),
]


def mistaken(mistake: Mistake) -> str:
    """The question's solution with the mistake made."""
    solution = next(q for q in read_lab(mistake.assignment).questions if q.name == mistake.question).solution
    assert mistake.find in solution, (mistake.name, mistake.find)
    return solution.replace(mistake.find, mistake.replace, 1)
