"""Memory and first answer per student (issue 18): a student with 8 lessons open.

For each lesson 00–07, a Jupyter kernel (jupyter_client) runs the lesson's code cells in a copy of
notebooks/, one by one, until the embedded practice server is in use (the first cells that touch the
backend; at most 12 cells, errors ignored). Then: the total RSS of the kernels and of every practice
server they use (and PSS, which counts shared pages once), and, in a ninth, new kernel, how long
``import labkit`` takes and how long its first answer takes to start (first token of
``labkit.stream_chat``), on the paced practice server; the goal is on the two together, the student's
wait from the first cell (``import labkit`` imports nothing up front: openai's client is loaded by the
first question).

Both ways are measured in one run, each with a fresh state folder: ``private`` (LABKIT_PRACTICE_SHARED=0,
each kernel with its own server in the kernel: how it was) and ``shared`` (one server per user).

With ``--all-cells`` every code cell of each lesson runs (on the fast practice server), as a student who
has worked through them; the first answer is then measured on the fast server too.

Run: .venv/bin/python benchmarks/bench_student_memory.py [private|shared ...] [--all-cells]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("0*.ipynb"))[:8]
GOAL_MB = 1024
GOAL_FIRST = 1.5
IN_USE = "import labkit.backend as _b; print('IN-USE' if _b._embedded_url else 'not yet')"


def run_cell(client, code: str, timeout: float = 120) -> str:  # type: ignore[no-untyped-def]
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    try:
        client.execute_interactive(code, timeout=timeout, output_hook=hook, store_history=False)
    except TimeoutError:
        out.append("(timed out)")
    return "".join(out)


def code_cells(lesson: Path) -> list[str]:
    cells = json.loads(lesson.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def start_kernel(workdir: Path, env: dict[str, str]) -> tuple[KernelManager, object]:
    km = KernelManager(kernel_name="python3")
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km.start_kernel(cwd=str(workdir), env=env)
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    return km, client


def servers(state: Path) -> list[int]:
    found = []
    for path in state.glob("labkit/practice-*.json"):
        try:
            found.append(int(json.loads(path.read_text())["pid"]))
        except (ValueError, KeyError, OSError):
            pass
    return found


def memory(pids: list[int]) -> tuple[float, float]:
    """Total RSS and PSS in MB of these processes and their descendants."""
    seen: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        for q in [p, *p.children(recursive=True)]:
            seen[q.pid] = q
    rss = pss = 0.0
    for q in seen.values():
        try:
            info = q.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20


def measure(mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="labkit-bench-memory-") as tmp:
        work, state = Path(tmp) / "notebooks", Path(tmp) / "runtime"
        shutil.copytree(ROOT / "notebooks", work)
        state.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
        env.update({"XDG_RUNTIME_DIR": str(state), "LABKIT_PRACTICE_SHARED": "0" if mode == "private" else "1",
                    "LABKIT_LANG": "en", "MPLBACKEND": "Agg", "LABKIT_PRACTICE_IDLE_MINUTES": "1"})
        if ALL_CELLS:
            env["LABKIT_PRACTICE_FAST"] = "1"
        kernels: list[tuple[KernelManager, object]] = []
        try:
            for lesson in LESSONS:
                km, client = start_kernel(work, env)
                kernels.append((km, client))
                ran = 0
                for code in code_cells(lesson)[: None if ALL_CELLS else 12]:
                    run_cell(client, code)
                    ran += 1
                    if not ALL_CELLS and "IN-USE" in run_cell(client, IN_USE):
                        break
                own_rss, own_pss = memory([km.provisioner.pid])  # type: ignore[union-attr]
                print(f"    {mode}: {lesson.stem}: ran {ran} cells; its kernel {own_rss:.0f} MB RSS, "
                      f"{own_pss:.0f} MB PSS", flush=True)
            pids = [km.provisioner.pid for km, _c in kernels] + servers(state)  # type: ignore[union-attr]
            rss, pss = memory(pids)
            km, client = start_kernel(work, env)
            kernels.append((km, client))
            started = time.perf_counter()
            run_cell(client, "import labkit")
            imported = time.perf_counter() - started
            out = run_cell(client, "import time\nt = time.perf_counter()\n"
                                   "first = next(iter(labkit.stream_chat('Hello, what can you do?')))\n"
                                   "print('FIRST', time.perf_counter() - t)")
            first = float(out.split("FIRST", 1)[1].split()[0]) if "FIRST" in out else float("nan")
            return {"rss": rss, "pss": pss, "import": imported, "first": first, "wait": imported + first,
                    "servers": len(servers(state)) if mode == "shared" else len(LESSONS)}
        finally:
            for km, client in kernels:
                client.stop_channels()  # type: ignore[attr-defined]
                km.shutdown_kernel(now=True)
            for pid in servers(state):  # the shared server this run started
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


ALL_CELLS = "--all-cells" in sys.argv


def main() -> None:
    modes = [a for a in sys.argv[1:] if not a.startswith("--")] or ["private", "shared"]
    what = "every cell run" if ALL_CELLS else "the first cells that use the backend run"
    print(f"a student with {len(LESSONS)} lessons open, {what} ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f})\n")
    results = {mode: measure(mode) for mode in modes}
    print(f"\n{'':<44}" + "".join(f"{m:>14}" for m in modes) + "   goal")
    rows = [("total RSS, kernels + practice servers (MB)", "rss", "{:14.0f}", f"<= {GOAL_MB}"),
            ("total PSS, shared pages counted once (MB)", "pss", "{:14.0f}", ""),
            ("practice servers", "servers", "{:14.0f}", "1"),
            ("new kernel: import labkit (s)", "import", "{:14.2f}", ""),
            ("new kernel: then the first answer starts (s)", "first", "{:14.2f}", ""),
            ("new kernel: the student's wait, both (s)", "wait", "{:14.2f}", f"<= {GOAL_FIRST}")]
    for label, key, fmt, goal in rows:
        print(f"  {label:<42}" + "".join(fmt.format(results[m][key]) for m in modes) + f"   {goal}")
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
