"""Grading a class: `labkit grade --jobs 2` (sandboxed) against `otter run` once per submission in a loop
(otter-grader 7 without Docker), on the same generated class of 30 submissions, in the same run.

The class (multimodal-request): full answers in three styles (the solution; all functions in one cell;
helpers and printing around them) and one under a Chinese id, partial answers, the empty student
version, a raising cell, a looping cell, broken JSON, a `.py` file, and hostile notebooks (they read
the master and the gradebook, delete a file, try the network, forge results, fork without end).
`otter run` gets the same folder minus what it cannot survive (the looping and fork-bomb notebooks:
it has no time or process limit of its own) and minus the `.py`.

Printed, measured vs goal side by side:
- per-submission time for both (goal: labkit ≥ 5× faster than `otter run`);
- the time an honest submission takes while a fork bomb is graded beside it, against the same
  honest submission graded alone;
- the machine's peak load average during the labkit run.

    .venv/bin/python benchmarks/bench_grading.py              # the class of 30
    .venv/bin/python benchmarks/bench_grading.py --skip-otter # labkit only
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from grading_support import Maker, write  # noqa: E402

from labkit.grading import Limits, grade_folder, isolation  # noqa: E402

ASSIGNMENT = "multimodal-request"
FORK_BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
FORGE = ("import json, os\nfor fd in range(1, 40):\n    try:\n        os.write(fd, (json.dumps({'event': 'results', "
         "'results': {'q1': {'score': 4}}}) + '\\n').encode())\n    except OSError:\n        pass\n"
         "import otter.test_files.ok_test as t\nt.run_doctest = lambda *a: (True, '')")


def one_cell(make: Maker) -> dict:
    """Style 2: every function in one cell."""
    nb = make.full()
    defs = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).lstrip().startswith("def ")]
    merged = "\n\n".join("".join(c["source"]) for c in defs)
    nb["cells"] = [c for c in nb["cells"] if c not in defs]
    nb["cells"].insert(2, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                           "source": merged})
    return nb


def chatty(make: Maker) -> dict:
    """Style 3: helpers, printing and a little exploration around the answers."""
    return make.with_cells_at_end(["def _helper(x):\n    return x\nprint('checking', _helper(1))",
                                   "for i in range(3):\n    print(i, strip_role_prefix('assistant\\nhi'))",
                                   "result = build_messages('hi', 'red-landscape.png')\nlen(result)"])


def make_class(make: Maker, folder: Path, book: Path, decoy: Path) -> dict[str, str]:
    hostile = [f"leaked = open({str(ROOT / 'labkit' / 'assignments' / (ASSIGNMENT + '.ipynb'))!r}).read()",
               f"book = open({str(book)!r}).read()\nassert 'student' in book",
               f"import os\nos.remove({str(decoy)!r})",
               "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2).close()"]
    plan: list[tuple[str, str, object]] = []
    for i in range(6):
        plan.append((f"s{i:02d}-full", "full", make.full()))
    for i in range(6, 9):
        plan.append((f"s{i:02d}-onecell", "full", one_cell(make)))
    for i in range(9, 12):
        plan.append((f"s{i:02d}-chatty", "full", chatty(make)))
    plan.append(("王芳", "full", make.full()))
    for i, solved in enumerate([["build_messages"], ["build_messages", "strip_role_prefix"], ["collect_stream"],
                                ["strip_role_prefix", "ask"], ["build_messages", "collect_stream"]]):
        plan.append((f"s{13 + i:02d}-partial", "partial", make.partial(solved)))
    plan.append(("s18-empty", "empty", make.partial([])))
    plan.append(("s19-empty", "empty", make.partial([])))
    plan.append(("s20-raising", "raising", make.with_cell_before("collect_stream", "raise RuntimeError('boom')")))
    plan.append(("s21-raising", "raising", make.with_cell_before("ask", "1 / 0")))
    plan.append(("s22-looping", "looping", make.with_cell_before("strip_role_prefix", "while True:\n    pass",
                                                                  replace=True)))
    plan.append(("s23-broken", "broken", '{"cells": [ {"cell_type": "code", "source": '))
    plan.append(("s24-broken", "broken", "not json at all"))
    plan.append(("s25-script", "py", "print('my answers')\n"))
    plan.append(("s26-hostile", "hostile", make.with_cells_at_end(hostile)))
    plan.append(("s27-hostile", "hostile", make.with_cells_at_end(hostile)))
    plan.append(("s28-forger", "hostile", make.with_cells_at_end([FORGE])))
    bomb = make.full()
    bomb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                             "source": FORK_BOMB})
    plan.append(("s29-forkbomb", "forkbomb", bomb))
    kinds = {}
    for student, kind, nb in plan:
        write(folder / (student + (".py" if kind == "py" else ".ipynb")), nb)  # type: ignore[arg-type]
        kinds[student] = kind
    return kinds


class LoadWatch:
    """The 1-minute load average, sampled every second while it runs."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, os.getloadavg()[0])

    def __enter__(self) -> "LoadWatch":
        self.peak = os.getloadavg()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_otter(autograder_zip: Path, notebooks: list[Path], out: Path, timeout: float) -> tuple[float, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    env["LABKIT_PRACTICE_FAST"] = "1"  # each run's kernel starts labkit's embedded practice server
    otter = str(Path(sys.executable).with_name("otter"))
    outcomes: dict[str, str] = {}
    started = time.perf_counter()
    for notebook in notebooks:
        target = out / notebook.stem
        target.mkdir(parents=True)
        try:
            done = subprocess.run([otter, "run", "-a", str(autograder_zip), "-o", str(target), str(notebook)],
                                  capture_output=True, text=True, env=env, timeout=timeout)
            outcomes[notebook.stem] = "ok" if (target / "results.json").exists() else f"failed ({done.returncode})"
        except subprocess.TimeoutExpired:
            outcomes[notebook.stem] = "timeout"
    return time.perf_counter() - started, outcomes


def honest_beside(make: Maker, scratch: Path, hostile: dict | None) -> float:
    """Seconds the honest (full) submission takes, graded with --jobs 2 beside ``hostile`` (or alone)."""
    folder = scratch / ("beside" if hostile else "alone")
    write(folder / "subs" / "honest.ipynb", make.full())
    if hostile is not None:
        write(folder / "subs" / "bomb.ipynb", hostile)
    summary = grade_folder(ASSIGNMENT, folder / "subs", folder / "g.csv", limits=Limits(wall=120, cell=10),
                           jobs=2, progress=False)
    return next(o.seconds for o in summary.graded if o.student == "honest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--skip-otter", action="store_true", help="only time labkit grade")
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")) and not name.startswith("LABKIT_PRACTICE_"):
            del os.environ[name]
    scratch = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        make = Maker(ASSIGNMENT, scratch)
        subs = scratch / "submissions"
        book = scratch / "grades.csv"
        decoy = scratch / "decoy.txt"
        decoy.write_text("a file the hostile submissions try to delete")
        kinds = make_class(make, subs, book, decoy)
        n = len(kinds)
        print(f"{n} submissions: " + ", ".join(f"{k} {list(kinds.values()).count(k)}"
                                               for k in dict.fromkeys(kinds.values())))
        print(f"machine: {os.cpu_count()} cores; isolation: {isolation()}; load before: {os.getloadavg()[0]:.1f}")

        with LoadWatch() as load:
            started = time.perf_counter()
            summary = grade_folder(ASSIGNMENT, subs, book, limits=Limits(wall=120, cell=10), jobs=args.jobs,
                                   progress=False)
            labkit_wall = time.perf_counter() - started
        with book.open(encoding="utf-8-sig") as handle:
            table = {row["student"]: row for row in csv.DictReader(handle)}
        print(summary.report())
        full = sorted({table[s]["total"] for s, k in kinds.items() if k == "full"})
        print(f"rows: {len(table)} of {n}; full answers scored {full}; forger scored {table['s28-forger']['total']}; "
              f"fork bomb scored {table['s29-forkbomb']['total']}; decoy file still there: {decoy.exists()}")
        per_kind: dict[str, list[float]] = {}
        for outcome in summary.graded:
            per_kind.setdefault(kinds.get(outcome.student, "?"), []).append(outcome.seconds)
        print("seconds per submission by kind: " + ", ".join(
            f"{k} {sum(v) / len(v):.1f}" for k, v in per_kind.items()))

        alone = honest_beside(make, scratch, None)
        bomb = make.full()
        bomb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                                 "source": FORK_BOMB})
        with LoadWatch() as bomb_load:
            beside = honest_beside(make, scratch, bomb)

        otter_wall = otter_n = 0.0
        if not args.skip_otter:
            survivable = sorted(p for p in subs.glob("*.ipynb") if kinds[p.stem] not in ("looping", "forkbomb"))
            otter_n = len(survivable)
            otter_wall, outcomes = run_otter(make.autograder_zip, survivable, scratch / "otter-out", timeout=300)
            print("otter run outcomes: " + ", ".join(f"{v} {list(outcomes.values()).count(v)}"
                                                    for v in dict.fromkeys(outcomes.values())))
        print()
        print(f"{'':52} {'measured':>12} {'goal':>22}")
        labkit_each = labkit_wall / n
        print(f"{'labkit grade (--jobs ' + str(args.jobs) + ', sandboxed), per submission':52} {labkit_each:>11.2f}s "
              f"{'':>22}")
        if otter_n:
            otter_each = otter_wall / otter_n
            print(f"{'otter run once per submission, per submission':52} {otter_each:>11.2f}s {'':>22}")
            print(f"{'speed-up':52} {otter_each / labkit_each:>11.1f}x {'>= 5x':>22}")
        print(f"{'honest submission graded alone':52} {alone:>11.1f}s")
        print(f"{'honest submission beside a fork bomb':52} {beside:>11.1f}s {'<= 1.5x alone':>22}")
        print(f"{'peak load average (class run / fork-bomb run)':52} {load.peak:>5.1f} / {bomb_load.peak:<5.1f} "
              f"{'responsive (<< 220)':>22}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
