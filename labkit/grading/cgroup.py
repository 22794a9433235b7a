"""A control group per graded submission: a process (task) limit and a CPU share.

Where the grader may create control groups (root, with the cgroup v2 unified hierarchy or the v1
``pids``, ``cpu`` and ``memory`` controllers), every submission's processes — the sandbox, the
student's process and all it forks, the test process — run in a group of their own with
``pids.max`` tasks, one CPU's worth of time and a memory limit for all of them together: a fork
bomb fills its own group, slows nobody else and is ended with it. Elsewhere :func:`create` returns
``None`` and the per-user process limit still applies.

Example:
    >>> group = create("doc", processes=64)
    >>> group is None or group.wrap(["true"])[0] == "/bin/sh"
    True
    >>> group is None or group.remove() is None
    True
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Group", "create"]

_ROOT = Path("/sys/fs/cgroup")


@dataclass
class Group:
    """The folders of one submission's control group (one per controller, or one in cgroup v2)."""

    folders: list[Path]

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` started inside the group (a shell joins it, then becomes the command)."""
        joins = "; ".join(f'echo $$ > "${i + 1}/cgroup.procs"' for i in range(len(self.folders)))
        return ["/bin/sh", "-c", f'{joins}; shift {len(self.folders)}; exec "$@"', "sh",
                *(str(f) for f in self.folders), *command]

    def kill(self) -> None:
        """End every process left in the group."""
        for _round in range(50):
            pids = {int(p) for f in self.folders for p in _read(f / "cgroup.procs").split()}
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        """End what is left and delete the group's folders."""
        self.kill()
        for folder in self.folders:
            for _try in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _own(controller: str) -> Path:
    """This process's own group for a cgroup v1 controller (new groups go inside it, never beside it)."""
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _number, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return _ROOT / controller / path.lstrip("/")
    return _ROOT / controller


def create(name: str, *, processes: int, cpus: float = 1.0, memory_mb: int | None = None) -> Group | None:
    """A new control group ``labkit-grade-<pid>-<name>`` with at most ``processes`` tasks, ``cpus``
    CPUs of time and (where the memory controller is there) ``memory_mb`` of memory for all its
    processes together, or ``None`` where none can be made."""
    leaf = f"labkit-grade-{os.getpid()}-{name}"
    period = 100_000
    unified = _ROOT / "cgroup.controllers"
    made: list[Path] = []
    try:
        if unified.is_file() and {"pids", "cpu"} <= set(_read(unified).split()):
            folder = _ROOT / leaf
            folder.mkdir()
            made.append(folder)
            (folder / "pids.max").write_text(str(processes))
            (folder / "cpu.max").write_text(f"{int(period * cpus)} {period}")
            if memory_mb and (folder / "memory.max").exists():
                (folder / "memory.max").write_text(str(memory_mb * 1024 * 1024))
            return Group(made)
        if (_ROOT / "pids" / "cgroup.procs").is_file():
            pids = _own("pids") / leaf
            pids.mkdir()
            made.append(pids)
            (pids / "pids.max").write_text(str(processes))
            if (_ROOT / "cpu" / "cpu.cfs_quota_us").is_file():
                cpu = _own("cpu") / leaf
                cpu.mkdir()
                made.append(cpu)
                (cpu / "cpu.cfs_period_us").write_text(str(period))
                (cpu / "cpu.cfs_quota_us").write_text(str(int(period * cpus)))
            if memory_mb and (_ROOT / "memory" / "memory.limit_in_bytes").is_file():
                memory = _own("memory") / leaf
                memory.mkdir()
                made.append(memory)
                (memory / "memory.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))
            return Group(made)
    except OSError:
        Group(made).remove()
    return None


def clean_stale() -> int:
    """Remove the groups of grading runs that are gone (a ``kill -9``): return how many."""
    removed = 0
    for parent in (_ROOT, _own("pids"), _own("cpu"), _own("memory")):
        try:
            entries = list(parent.glob("labkit-grade-*-*"))
        except OSError:
            continue
        for folder in entries:
            try:
                pid = int(folder.name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid() or Path(f"/proc/{pid}").exists():
                continue
            Group([folder]).remove()
            removed += not folder.exists()
    return removed
