"""Mutation testing of the lessons' self-checks (and the graded labs' tests): how many wrong answers
made from each reference solution does the check reject?

    python scripts/mutants.py                 # the table; exit 1 when a score is below its floor
    python scripts/mutants.py --survivors     # also print each surviving mutant's change
    python scripts/mutants.py --only 07-      # only the exercises whose name starts with this
    python scripts/mutants.py --jobs 2        # worker processes (default: 2, or fewer CPUs)
    python scripts/mutants.py --listed        # print each listed equivalent mutant's change and reason
                                              # (runs nothing; combine with --only)

The mutants come from mutmut's mutation operators (numbers, strings, True/False, assignments to None,
dropped or None arguments, swapped string methods, arithmetic/comparison/boolean operators, is/in,
break/continue, lambdas, conditional expressions), used as a library over the solution file's syntax
tree (tests/mutants/solutions/), one change per mutant, the whole cell and not only function bodies.
Each mutant that compiles is run as the student's cell and checked by
the exercise's self-check, exactly as tests/test_exercise_solutions.py runs the solutions: killed when
the check says ❌ (or the code raises, or runs past its time), survived when it says ✅. A survivor
must be killed by a new check case or listed in tests/mutants/equivalent.tsv (exercise, mutant id,
one-line reason why it behaves as the solution does). score = killed / (mutants − equivalent).

Each worker process starts labkit's embedded practice server once (fast pacing) and keeps it; nothing
is cached between runs.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
NOTEBOOKS = ROOT / "notebooks"
EQUIVALENT = TESTS / "mutants" / "equivalent.tsv"
SELF_CHECK_GOAL = 0.90
HIDDEN_TESTS_GOAL = 0.95     # a graded question's tests (public and hidden, as grading runs them)
NAMED_MISTAKES_GOAL = 1.0    # a graded question's public tests reject every mistake its text names
MUTANT_SECONDS = 30


@dataclass
class Mutant:
    exercise: str
    ident: str
    operator: str
    occurrence: int
    code: str

    def change(self, original: str) -> str:
        """The changed lines, as a short unified diff."""
        diff = difflib.unified_diff(original.splitlines(), self.code.splitlines(), lineterm="", n=0)
        return "\n".join(line for line in diff if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))


def mutant_id(code: str) -> str:
    """A mutant's stable name: the hash of its code (a changed solution gives new names)."""
    return hashlib.sha1(code.encode("utf-8")).hexdigest()[:10]


def _nodes(node: Any) -> Any:
    yield node
    for child in node.children:
        yield from _nodes(child)


def mutants_of(exercise: str, source: str) -> list[Mutant]:
    """Every distinct mutant of ``source`` that compiles: mutmut's mutation operators, each applied at
    one place of the solution's syntax tree (the whole cell, not only function bodies)."""
    import libcst as cst
    from mutmut.mutation.file_mutation import deep_replace
    from mutmut.mutation.mutators import mutation_operators

    module = cst.parse_module(source)
    seen: dict[str, Mutant] = {}
    for n, node in enumerate(_nodes(module)):
        for node_type, operator in mutation_operators:
            if not isinstance(node, node_type):
                continue
            for replacement in operator(node):
                code = deep_replace(module, node, replacement).code  # type: ignore[union-attr]
                if code == source:
                    continue
                try:
                    compile(code, exercise, "exec")
                except (SyntaxError, ValueError):  # incompetent: no student could run it
                    continue
                ident = mutant_id(code)
                seen.setdefault(ident, Mutant(exercise, ident, operator.__name__, n, code))
    return list(seen.values())


def read_equivalent(path: Path = EQUIVALENT) -> dict[tuple[str, str], str]:
    """(exercise, mutant id) → the reason it is equivalent, from the committed list."""
    listed: dict[tuple[str, str], str] = {}
    if path.is_file():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 3 or not parts[2].strip():
                raise SystemExit(f"{path}:{n}: expected 'exercise<TAB>mutant id<TAB>reason', got {line!r}")
            listed[(parts[0], parts[1])] = parts[2].strip()
    return listed


# ---------------------------------------------------------------- running one mutant (in a worker)

class MutantTimeout(BaseException):
    """A mutant ran past its time (an endless loop): counted as killed."""


def _alarm(signum: int, frame: Any) -> None:
    raise MutantTimeout


def _worker_init() -> None:
    os.environ.update({"LABKIT_PRACTICE_FAST": "1", "LABKIT_QUIET": "1", "LABKIT_LANG": "en"})
    for name in list(os.environ):
        if name.startswith(("LABKIT_BASE_URL", "LABKIT_API_KEY", "LABKIT_MODEL", "OPENAI_")):
            del os.environ[name]
    sys.path.insert(0, str(TESTS))
    os.chdir(NOTEBOOKS)
    signal.signal(signal.SIGALRM, _alarm)


def _exercise(name: str) -> Any:
    import exercise_catalog

    return next(e for e in exercise_catalog.EXERCISES if e.name == name)


def run_self_check(exercise_name: str, code: str) -> tuple[str, str]:
    """('killed' | 'survived', why) for one mutant of a lesson exercise."""
    import contextlib
    import io

    import exercise_catalog

    exercise = _exercise(exercise_name)
    folder = tempfile.mkdtemp(prefix="labkit-mutant-") if exercise.lesson.startswith("06") else None
    signal.alarm(MUTANT_SECONDS)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if folder:
                os.chdir(folder)
            verdict = exercise_catalog.run_direct(exercise, code)
    except MutantTimeout:
        return "killed", "timeout"
    except Exception as exc:  # the mutant's own code raised before the check ran
        return "killed", f"raised {type(exc).__name__}"
    finally:
        signal.alarm(0)
        os.chdir(NOTEBOOKS)
        if folder:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    if getattr(verdict, "ok", False):
        return "survived", ""
    return "killed", (getattr(verdict, "problems", None) or ["?"])[0][:120]


_LABS: dict[str, Any] = {}


def run_lab_question(key: str, code: str, public_only: bool = False) -> tuple[str, str]:
    """('killed' | 'survived', why) for one answer to a graded question (``lab-<assignment>-<qN>``):
    killed when one of the question's test cases fails (only its public ones with ``public_only``)."""
    import lab_catalog

    assignment, question = key[len("lab-"):].rsplit("-", 1)
    if assignment not in _LABS:
        _LABS[assignment] = lab_catalog.read_lab(assignment)
    signal.alarm(MUTANT_SECONDS)
    try:
        results = lab_catalog.run_question(_LABS[assignment], question, code)
    except MutantTimeout:
        return "killed", "timeout"
    except Exception as exc:  # the answer itself raised: the notebook stops there, every test fails
        return "killed", f"raised {type(exc).__name__}"
    finally:
        signal.alarm(0)
        os.chdir(NOTEBOOKS)
    failed = [error for case, error in results if error and not (public_only and case.hidden)]
    return ("killed", failed[0][:120]) if failed else ("survived", "")


def _run(task: tuple[str, str, str]) -> tuple[str, str, str, str, float]:
    kind, exercise, code = task
    started = time.monotonic()
    if kind == "lab":
        outcome, why = run_lab_question(exercise, code)
    elif kind == "named":
        outcome, why = run_lab_question(exercise.split("|", 1)[0], code, public_only=True)
    else:
        outcome, why = run_self_check(exercise, code)
    return exercise, mutant_id(code), outcome, why, time.monotonic() - started


# ---------------------------------------------------------------- the table

@dataclass
class Row:
    exercise: str
    mutants: int
    killed: int
    equivalent: int
    survivors: list[Mutant]
    goal: float
    seconds: float = 0.0

    @property
    def score(self) -> float:
        judged = self.mutants - self.equivalent
        return self.killed / judged if judged else 1.0

    @property
    def ok(self) -> bool:
        return self.score >= self.goal


def lesson_exercises() -> list[Any]:
    sys.path.insert(0, str(TESTS))
    import exercise_catalog

    return list(exercise_catalog.EXERCISES)


def measure(only: str = "", jobs: int = 2, log: Any = None) -> tuple[list[Row], list[str]]:
    """Run every mutant of every (selected) exercise; the rows of the table and the notes (stale
    entries of the equivalent list)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import lab_catalog

    equivalent = read_equivalent()
    exercises = [e for e in lesson_exercises() if e.name.startswith(only)]
    questions = [q for lab in lab_catalog.labs() for q in lab.questions if q.key.startswith(only)]
    mistakes = [m for m in lab_catalog.MISTAKES if f"lab-{m.assignment}-{m.question}".startswith(only)]
    plan: dict[str, list[Mutant]] = {e.name: mutants_of(e.name, e.solution) for e in exercises}
    plan.update({q.key: mutants_of(q.key, q.solution) for q in questions})
    kinds = {e.name: "lesson" for e in exercises} | {q.key: "lab" for q in questions}
    tasks = [(kinds[name], name, m.code) for name, ms in plan.items() for m in ms]
    tasks += [("named", f"lab-{m.assignment}-{m.question}|{m.name}", lab_catalog.mistaken(m)) for m in mistakes]
    outcomes: dict[tuple[str, str], tuple[str, str]] = {}
    seconds: dict[str, float] = {}
    context = multiprocessing.get_context("fork")
    with context.Pool(max(1, jobs), initializer=_worker_init, maxtasksperchild=200) as pool:
        for exercise, ident, outcome, why, took in pool.imap_unordered(_run, tasks, chunksize=1):
            outcomes[(exercise, ident)] = (outcome, why)
            seconds[exercise] = seconds.get(exercise, 0.0) + took
            if log:
                print(f"{len(outcomes)}/{len(tasks)}", end="\r", file=log, flush=True)
    rows, notes = [], []
    for name in plan:
        e = _Named(name)
        ms = plan[e.name]
        killed = sum(outcomes[(e.name, m.ident)][0] == "killed" for m in ms)
        survivors = [m for m in ms if outcomes[(e.name, m.ident)][0] == "survived"]
        listed = [m for m in survivors if (e.name, m.ident) in equivalent]
        for m in ms:
            if (e.name, m.ident) in equivalent and outcomes[(e.name, m.ident)][0] == "killed":
                notes.append(f"{e.name} {m.ident}: listed as equivalent but killed: remove it from {EQUIVALENT.name}")
        idents = {m.ident for m in ms}
        notes += [f"{name} {ident}: listed as equivalent but no such mutant (the solution changed?)"
                  for (name, ident) in equivalent if name == e.name and ident not in idents]
        rows.append(Row(e.name, len(ms), killed, len(listed),
                        [m for m in survivors if (e.name, m.ident) not in equivalent],
                        HIDDEN_TESTS_GOAL if kinds[e.name] == "lab" else SELF_CHECK_GOAL,
                        seconds.get(e.name, 0.0)))
    by_question: dict[str, list[tuple[str, str]]] = {}
    for m in mistakes:
        key = f"lab-{m.assignment}-{m.question}"
        outcome = outcomes[(f"{key}|{m.name}", mutant_id(lab_catalog.mistaken(m)))][0]
        by_question.setdefault(key, []).append((m.name, outcome))
    for key, named in by_question.items():
        name = f"{key} public: named mistakes"
        seconds_named = sum(seconds.get(f"{key}|{n}", 0.0) for n, _ in named)
        rows.append(Row(name, len(named), sum(o == "killed" for _, o in named), 0,
                        [Mutant(name, n, "named mistake", 0, "") for n, o in named if o != "killed"],
                        NAMED_MISTAKES_GOAL, seconds_named))
    return rows, notes


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def table(rows: list[Row]) -> str:
    lines = [f"{'exercise':48} {'mutants':>7} {'killed':>6} {'equiv.':>6} {'score':>6}  {'goal':11} {'s':>5}",
             "-" * 92]
    for r in rows:
        mark = "ok" if r.ok else "BELOW"
        lines.append(f"{r.exercise:48} {r.mutants:7d} {r.killed:6d} {r.equivalent:6d} {r.score:6.1%}  "
                     f">= {r.goal:.0%} {mark:5} {r.seconds:5.0f}")
    total_judged = sum(r.mutants - r.equivalent for r in rows)
    total_killed = sum(r.killed for r in rows)
    lines.append("-" * 92)
    lines.append(f"{'all':48} {sum(r.mutants for r in rows):7d} {total_killed:6d} "
                 f"{sum(r.equivalent for r in rows):6d} {total_killed / max(1, total_judged):6.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="only exercises whose name starts with this (e.g. 07-)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--survivors", action="store_true", help="print every surviving mutant's change")
    parser.add_argument("--listed", action="store_true",
                        help=f"print each mutant listed in {EQUIVALENT.name} (its change and reason); runs nothing")
    args = parser.parse_args(argv)
    if args.listed:
        return print_listed(args.only)
    started = time.monotonic()
    rows, notes = measure(args.only, args.jobs, log=sys.stderr if sys.stderr.isatty() else None)
    print(table(rows))
    print(f"({time.monotonic() - started:.0f} s, {args.jobs} workers; mutants by mutmut's operators)")
    for r in rows:
        if r.survivors and (args.survivors or not r.ok):
            source = _exercise_source(r.exercise)
            print(f"\nsurvivors of {r.exercise} (kill them with a new case, or list them in {EQUIVALENT.name}):")
            for m in r.survivors:
                print(f"  {m.ident}  {m.operator}")
                if not m.code:
                    continue
                print("\n".join("      " + line for line in m.change(source).splitlines()))
    for note in notes:
        print("note:", note)
    return 0 if all(r.ok for r in rows) else 1


def print_listed(only: str = "") -> int:
    """Print the change and the reason of every mutant listed as equivalent (of the exercises whose
    name starts with ``only``), so that the list can be reviewed; a listed id that no longer names a
    mutant is reported. Exit status 1 when there is such a stale entry."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    equivalent = read_equivalent()
    stale = 0
    for name in sorted({exercise for exercise, _ in equivalent if exercise.startswith(only)}):
        source = _exercise_source(name)
        mutants = {m.ident: m for m in mutants_of(name, source)} if source else {}
        for (exercise, ident), reason in equivalent.items():
            if exercise != name:
                continue
            print(f"{name}  {ident}  ({reason})")
            if ident not in mutants:
                stale += 1
                print("      no such mutant (the solution changed?)")
                continue
            print(f"      [{mutants[ident].operator}]")
            print("\n".join("      " + line for line in mutants[ident].change(source).splitlines()))
    return 1 if stale else 0


def _exercise_source(name: str) -> str:
    import lab_catalog

    for e in lesson_exercises():
        if e.name == name:
            return e.solution
    for lab in lab_catalog.labs():
        for q in lab.questions:
            if q.key == name:
                return q.solution
    return ""


if __name__ == "__main__":
    sys.exit(main())
