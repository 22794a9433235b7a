"""Grading 60 submissions: `labkit grade` (sandboxed children, --jobs 2) against `otter run` invoked once
per submission in a loop (otter-grader 7 without Docker), on the same folder, in the same run.

The mix (multimodal-request): 24 full, 12 partial, 6 with broken JSON, 6 that raise in a cell, 12
hostile (they read the master notebook and the gradebook, delete a file, try the network). Hanging
submissions are left out of the mix: `otter run` has no time limit of its own and would never finish.

    .venv/bin/python benchmarks/bench_grading.py            # 60 submissions
    .venv/bin/python benchmarks/bench_grading.py --n 12     # a quicker look
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from grading_support import Maker, write  # noqa: E402

from labkit.grading import Limits, grade_folder, isolation  # noqa: E402

ASSIGNMENT = "multimodal-request"


def make_submissions(make: Maker, folder: Path, n: int, decoy: Path) -> dict[str, str]:
    kinds = {}
    hostile = [f"leaked = open({str(ROOT / 'labkit' / 'assignments' / (ASSIGNMENT + '.ipynb'))!r}).read()",
               f"book = open({str(folder.parent / 'grades.csv')!r}).read()\nassert 'student' in book",
               f"import os\nos.remove({str(decoy)!r})",
               "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2).close()"]
    plan = ["full"] * 24 + ["partial"] * 12 + ["broken"] * 6 + ["raising"] * 6 + ["hostile"] * 12
    for i in range(n):
        kind = plan[(i * len(plan)) // n]
        student = f"s{i:02d}-{kind}"
        if kind == "full":
            nb: object = make.full()
        elif kind == "partial":
            nb = make.partial(["build_messages", "strip_role_prefix"][: 1 + i % 2])
        elif kind == "broken":
            nb = '{"cells": [ {"cell_type": "code", "source": '
        elif kind == "raising":
            nb = make.with_cell_before("collect_stream", "raise RuntimeError('boom')")
        else:
            nb = make.with_cells_at_end(hostile)
        write(folder / f"{student}.ipynb", nb)  # type: ignore[arg-type]
        kinds[student] = kind
    return kinds


def run_otter(autograder_zip: Path, folder: Path, out: Path, timeout: float) -> tuple[float, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    env["LABKIT_PRACTICE_FAST"] = "1"  # each run's kernel starts labkit's embedded practice server
    otter = str(Path(sys.executable).with_name("otter"))
    outcomes: dict[str, str] = {}
    started = time.perf_counter()
    for notebook in sorted(folder.glob("*.ipynb")):
        target = out / notebook.stem
        target.mkdir(parents=True)
        try:
            done = subprocess.run([otter, "run", "-a", str(autograder_zip), "-o", str(target), str(notebook)],
                                  capture_output=True, text=True, env=env, timeout=timeout)
            outcomes[notebook.stem] = "ok" if (target / "results.json").exists() else f"failed ({done.returncode})"
        except subprocess.TimeoutExpired:
            outcomes[notebook.stem] = "timeout"
    return time.perf_counter() - started, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60)
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
        decoy = scratch / "decoy.txt"
        decoy.write_text("a file the hostile submissions try to delete")
        kinds = make_submissions(make, subs, args.n, decoy)
        print(f"{args.n} submissions: " + ", ".join(f"{k} {list(kinds.values()).count(k)}"
                                                     for k in dict.fromkeys(kinds.values())))
        print(f"machine: {os.cpu_count()} cores; isolation: {isolation()}")

        book = scratch / "grades.csv"
        started = time.perf_counter()
        summary = grade_folder(ASSIGNMENT, subs, book, limits=Limits(wall=120, cell=30), jobs=args.jobs,
                               progress=False)
        labkit_wall = time.perf_counter() - started
        with book.open(encoding="utf-8") as handle:
            table = {row["student"]: row for row in csv.DictReader(handle)}
        print(summary.report())
        full = [table[s]["total"] for s, k in kinds.items() if k == "full"]
        possible = summary.questions and sum(summary.questions.values())
        print(f"full submissions scored {sorted(set(full))} of {possible:g}; decoy file still there: {decoy.exists()}")

        if not args.skip_otter:
            otter_wall, outcomes = run_otter(make.autograder_zip, subs, scratch / "otter-out", timeout=300)
            print("otter run outcomes: " + ", ".join(f"{v} {list(outcomes.values()).count(v)}"
                                                    for v in dict.fromkeys(outcomes.values())))
            print(f"decoy file after otter run: {'still there' if decoy.exists() else 'DELETED by a submission'}")
        print()
        print(f"{'':38} {'wall time':>10} {'per submission':>15}")
        print(f"{'labkit grade (--jobs ' + str(args.jobs) + ', sandboxed)':38} {labkit_wall:>9.1f}s "
              f"{labkit_wall / args.n:>14.2f}s")
        if not args.skip_otter:
            print(f"{'otter run, once per submission':38} {otter_wall:>9.1f}s {otter_wall / args.n:>14.2f}s")
            print(f"speed-up: {otter_wall / labkit_wall:.1f}x")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
