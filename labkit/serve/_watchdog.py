"""labkit's watchdog: runs a model server and ends everything it started when the launcher goes.

Run by :class:`labkit.serve.VLLMServer` as ``python _watchdog.py FD GRACE [--port N] [--report FD2] --
COMMAND…`` (by path, so it imports nothing of labkit), as the leader of a new session and process group.
``FD`` is the read end of a pipe whose write end only the launcher holds: the kernel closes it however the
launcher ends (exit, crash, SIGKILL), from whichever thread it started the server, so an end-of-file means
"the launcher is gone". Linux's PR_SET_PDEATHSIG cannot do this: it fires when the *thread* that forked
exits, and only reaches the direct child.

What the server starts is tracked three ways, because a process can leave the process group (``setsid``,
a daemon's double fork):

- a cgroup of its own (``labkit-serve-PID``, next to this process's cgroup, v2 first, else v1 ``pids`` or
  ``freezer``) where one can be made: every process forked inside stays a member whatever its session;
- this process is a child subreaper (PR_SET_CHILD_SUBREAPER), so orphaned descendants are re-parented to
  it rather than to init, and its descendants are recorded (pid and start time) every second;
- the owner of the listening port ``--port``, if it started after this watchdog and runs as the same user.

``LABKIT_SERVE_CGROUP=0`` in the environment leaves cgroups out (the tests use it to check the rest).

The watchdog then sends SIGTERM to the group and to every tracked process outside it, waits GRACE
seconds, and sends SIGKILL to whatever is left (a child that ignores SIGTERM included). It does so when the
launcher goes, when it receives SIGTERM/SIGINT/SIGHUP itself, and when the server exits on its own
(stragglers go too). Processes outside the group that it had to end are named on stderr (the server's log)
and on ``--report FD2`` (JSON lines on a pipe the launcher reads). Its exit code is the server's (128+N for
signal N). Standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
CGROUP_PREFIX = "labkit-serve-"


# ---------------------------------------------------------------- /proc


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, start time in clock ticks) of ``pid``, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _all_stats() -> dict[int, tuple[str, int, int, int]]:
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _stat(int(entry.name))
        if stat is not None:
            found[int(entry.name)] = stat
    return found


def _live(pid: int, start: int | None = None) -> bool:
    """True while ``pid`` runs (not a zombie) and, when given, is the process that started at ``start``."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and (start is None or stat[3] == start)


def _others_alive(pgid: int, me: int) -> bool:
    """True while a live (non-zombie) process other than ``me`` is in process group ``pgid``."""
    if not Path("/proc").is_dir():
        return False  # not Linux: the caller falls back to the direct child only
    return any(pid != me and s[2] == pgid and s[0] not in ("Z", "X") for pid, s in _all_stats().items())


def descendants(root: int, stats: dict[int, tuple[str, int, int, int]] | None = None) -> dict[int, int]:
    """``{pid: start time}`` of the live descendants of ``root``.

    Example:
        >>> descendants(os.getpid()) == {} or True
        True
    """
    stats = _all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for pid, (_state, ppid, _pgid, _start) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, int] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        if stats[pid][0] not in ("Z", "X"):
            found[pid] = stats[pid][3]
        todo.extend(children.get(pid, ()))
    return found


def port_owners(port: int) -> set[int]:
    """PIDs of the processes holding a socket that listens on TCP ``port`` (IPv4 or IPv6).

    Example:
        >>> port_owners(0)
        set()
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{parts[9]}]")
    owners: set[int] = set()
    if not inodes:
        return owners
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) in inodes:
                    owners.add(int(fd_dir.parent.name))
                    break
        except OSError:
            continue
    return owners


def describe(pid: int) -> str:
    """``PID (command line)``, shortened, with any ``--api-key`` value masked."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        args = []
    shown, hide = [], False
    for arg in (a for a in args if a):
        name, eq, _value = arg.partition("=")
        if hide:
            shown.append("****")
        elif name == "--api-key" and eq:
            shown.append("--api-key=****")
        else:
            shown.append(arg)
        hide = name == "--api-key" and not eq and not hide
    text = " ".join(shown) or "?"
    return f"{pid} ({text[:100] + '…' if len(text) > 100 else text})"


# ---------------------------------------------------------------- cgroups


def _cgroup_candidates() -> list[Path]:
    """Folders of this process's cgroups where a child could be made: v2 first, then v1 pids, freezer."""
    try:
        own = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    by_kind: dict[str, tuple[str, str]] = {}  # "2" / v1 controller -> (mount point, mount root)
    for line in mounts:
        head, _sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        if rest[0] == "cgroup2":
            by_kind.setdefault("2", (fields[4], fields[3]))
        elif rest[0] == "cgroup":
            for option in rest[2].split(","):
                by_kind.setdefault(option, (fields[4], fields[3]))
    places: dict[str, Path] = {}
    for line in own:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        kinds = ["2"] if hierarchy == "0" and controllers == "" else controllers.split(",")
        for kind in kinds:
            if kind in by_kind:
                mount, root = by_kind[kind]
                rel = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
                places[kind] = Path(mount) / ("" if rel == "." else rel)
    return [places[k] for k in ("2", "pids", "freezer") if k in places]


class Cgroup:
    """A cgroup made for the server: its members are everything the server started, whatever the session."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def make(cls, name: str) -> Cgroup | None:
        """A new cgroup ``name`` beside this process's, or None where none can be made (not root, no cgroupfs)."""
        for parent in _cgroup_candidates():
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            if os.access(path / "cgroup.procs", os.W_OK):
                return cls(path)
            cls(path).remove()
        return None

    def join(self) -> None:
        """Move the calling process into this cgroup (run in the server's process before it starts)."""
        try:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass  # still tracked as a descendant and by its port

    def members(self) -> set[int]:
        try:
            return {int(p) for p in (self.path / "cgroup.procs").read_text().split()}
        except (OSError, ValueError):
            return set()

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL every member (``cgroup.kill`` where the kernel has it, so a forking loop cannot outrun it)."""
        try:
            (self.path / "cgroup.kill").write_text("1")
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = {p for p in self.members() if _live(p)}
            if not live:
                return
            for pid in live:
                _signal(pid, signal.SIGKILL)
            _reap()
            time.sleep(0.05)

    def remove(self) -> None:
        """Delete the cgroup folder (only one this module made, once empty)."""
        if self.path.name.startswith(CGROUP_PREFIX):
            try:
                self.path.rmdir()
            except OSError:
                pass


# ---------------------------------------------------------------- ending


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_child_status: dict[int, int] = {}


def _reap() -> None:
    """Collect every exited child (this is a subreaper: orphans come here), keeping their exit codes."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _child_status[pid] = os.waitstatus_to_exitcode(status)


def _set_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the process group, the cgroup and the port remain


class Tracker:
    """Everything the server started: recorded descendants, the cgroup's members, the port's owner."""

    def __init__(self, me: int, port: int | None, cgroup: Cgroup | None) -> None:
        self.me = me
        self.port = port
        self.cgroup = cgroup
        own = _stat(me)
        self.my_start = own[3] if own else 0
        self.uid = os.getuid()
        self.recorded: dict[int, int] = {}  # pid -> start time
        self.how: dict[int, str] = {}

    def record(self) -> None:
        stats = _all_stats()
        for pid, start in descendants(self.me, stats).items():
            self.recorded.setdefault(pid, start)

    def tracked(self) -> dict[int, str]:
        """Live tracked processes other than this one: ``{pid: how it was found}``."""
        found: dict[int, str] = {}
        stats = _all_stats()
        for pid in descendants(self.me, stats):
            found.setdefault(pid, "descendant")
        for pid, start in self.recorded.items():
            if _live(pid, start):
                found.setdefault(pid, "descendant")
        if self.cgroup is not None:
            for pid in self.cgroup.members():
                if _live(pid):
                    found.setdefault(pid, "cgroup")
        if self.port:
            for pid in port_owners(self.port):
                stat = stats.get(pid)
                try:
                    same_user = Path(f"/proc/{pid}").stat().st_uid == self.uid
                except OSError:
                    same_user = False
                if stat is not None and stat[3] >= self.my_start and same_user:
                    found.setdefault(pid, f"port {self.port}")
        found.pop(self.me, None)
        return {pid: how for pid, how in found.items() if _live(pid)}

    def escaped(self, pgid: int) -> dict[int, str]:
        """Tracked processes that are no longer in the server's process group."""
        out = {}
        for pid, how in self.tracked().items():
            stat = _stat(pid)
            if stat is not None and stat[2] != pgid:
                out[pid] = how
        return out


def _write_report(fd: int | None, record: dict[str, object]) -> None:
    if fd is not None:
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
        except OSError:
            pass  # the launcher is gone (EPIPE): the log says it all


def _end_everything(tracker: Tracker, child: subprocess.Popen[bytes], grace: float, report: int | None) -> None:
    me = tracker.me
    pgid = os.getpgrp()

    def child_alive() -> bool:
        _reap()
        return child.pid not in _child_status

    escaped = tracker.escaped(pgid)
    described = {pid: describe(pid) for pid in escaped}
    if child_alive() or _others_alive(pgid, me) or escaped:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in escaped:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (child_alive() or _others_alive(pgid, me) or tracker.tracked()):
            for pid in set(tracker.escaped(pgid)) - set(escaped):  # left the group while ending
                escaped[pid] = "descendant"
                described[pid] = describe(pid)
                _signal(pid, signal.SIGTERM)
            time.sleep(0.1)
        for pid in tracker.escaped(pgid):
            escaped.setdefault(pid, "descendant")
            described.setdefault(pid, describe(pid))
            _signal(pid, signal.SIGKILL)
        if tracker.cgroup is not None:
            others = tracker.cgroup.members() - {me}
            if others:
                tracker.cgroup.kill()
        _reap()
    if escaped:
        names = "; ".join(f"{described[pid]} [{how}]" for pid, how in escaped.items())
        print(f"labkit watchdog: ended {len(escaped)} process(es) that had left the server's process group "
              f"and would have outlived it: {names}", file=sys.stderr, flush=True)
        _write_report(report, {"escaped": [{"pid": pid, "process": described[pid], "found_by": how}
                                           for pid, how in escaped.items()]})
    if tracker.cgroup is not None:
        tracker.cgroup.remove()
    if child_alive() or _others_alive(pgid, me):
        sys.stderr.flush()
        os.killpg(pgid, signal.SIGKILL)  # ends the watchdog too: nothing of the group is left


def _parse(argv: list[str]) -> tuple[int, float, int | None, int | None, list[str]] | None:
    if "--" not in argv or argv.index("--") < 3:
        return None
    split = argv.index("--")
    head, command = argv[1:split], argv[split + 1:]
    if not command:
        return None
    rest = head[2:]
    if len(rest) % 2 or any(k not in ("--port", "--report") for k in rest[::2]):
        return None
    options = dict(zip(rest[::2], rest[1::2], strict=True))
    port = int(options["--port"]) if "--port" in options else None
    report = int(options["--report"]) if "--report" in options else None
    return int(head[0]), float(head[1]), port, report, command


def main(argv: list[str]) -> int:
    parsed = _parse(argv)
    if parsed is None:
        print("usage: _watchdog.py FD GRACE [--port N] [--report FD2] -- COMMAND...", file=sys.stderr)
        return 2
    lifeline, grace, port, report, command = parsed
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)  # a handler, not SIG_IGN: the server gets default handling after exec
    me = os.getpid()
    for fd in (lifeline, report):
        if fd is not None:
            os.set_inheritable(fd, False)  # the server must not hold the launcher's pipes
    _set_subreaper()
    cgroup = Cgroup.make(f"{CGROUP_PREFIX}{me}") if os.environ.get("LABKIT_SERVE_CGROUP") != "0" else None
    _write_report(report, {"cgroup": str(cgroup.path) if cgroup else None})
    tracker = Tracker(me, port, cgroup)
    try:
        # same process group; stdout/stderr: the launcher's log
        child = subprocess.Popen(command, preexec_fn=cgroup.join if cgroup else None)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"labkit watchdog: cannot run {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        if cgroup is not None:
            cgroup.remove()
        return 127
    last_record = 0.0
    while not stopping:
        try:
            ready, _, _ = select.select([lifeline], [], [], 0.5)
        except InterruptedError:
            continue
        if ready and not os.read(lifeline, 4096):
            break  # end of file: the launcher is gone
        _reap()
        if child.pid in _child_status:
            break
        if time.monotonic() - last_record >= 1.0:
            tracker.record()
            last_record = time.monotonic()
    _end_everything(tracker, child, grace, report)
    while child.pid not in _child_status:
        try:
            pid, status = os.waitpid(child.pid, 0)
            _child_status[pid] = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            _child_status.setdefault(child.pid, 0)
    code = _child_status[child.pid]
    child.returncode = code  # already reaped: keep Popen from waiting for it again
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
