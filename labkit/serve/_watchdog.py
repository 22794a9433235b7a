"""labkit's watchdog: runs a model server and ends its whole process group when the launcher goes.

Run by :class:`labkit.serve.VLLMServer` as ``python _watchdog.py FD GRACE -- COMMAND…`` (by path, so
it imports nothing of labkit), as the leader of a new session and process group. ``FD`` is the read
end of a pipe whose write end only the launcher holds: the kernel closes it however the launcher
ends (exit, crash, SIGKILL), from whichever thread it started the server, so an end-of-file means
"the launcher is gone". Linux's PR_SET_PDEATHSIG cannot do this: it fires when the *thread* that
forked exits, and only reaches the direct child.

The watchdog then sends SIGTERM to the group (the server and everything it started, such as vLLM's
engine core), waits GRACE seconds, and sends SIGKILL to whatever is left (a child that ignores
SIGTERM included). It does the same when it receives SIGTERM/SIGINT/SIGHUP itself, and when the
server exits on its own (stragglers go too). Its exit code is the server's (128+N for signal N).
Standard library only.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


def _others_alive(pgid: int, me: int) -> bool:
    """True while a live (non-zombie) process other than ``me`` is in process group ``pgid``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return False  # not Linux: the caller falls back to the direct child only
    for stat in proc.glob("[0-9]*/stat"):
        try:
            pid = int(stat.parent.name)
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, ValueError):
            continue
        if pid != me and len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: _watchdog.py FD GRACE -- COMMAND...", file=sys.stderr)
        return 2
    lifeline, grace, command = int(argv[1]), float(argv[2]), argv[4:]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)  # a handler, not SIG_IGN: the server gets default handling after exec
    try:
        child = subprocess.Popen(command)  # same process group; stdout/stderr: the launcher's log
    except OSError as exc:
        print(f"labkit watchdog: cannot run {command[0]!r}: {exc}", file=sys.stderr, flush=True)
        return 127
    code: int | None = None
    while not stopping:
        try:
            ready, _, _ = select.select([lifeline], [], [], 0.5)
        except InterruptedError:
            continue
        if ready and not os.read(lifeline, 4096):
            break  # end of file: the launcher is gone
        code = child.poll()
        if code is not None:
            break
    me = os.getpid()
    pgid = os.getpgrp()
    if child.poll() is None or _others_alive(pgid, me):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (child.poll() is None or _others_alive(pgid, me)):
            time.sleep(0.1)
        if child.poll() is None or _others_alive(pgid, me):
            sys.stderr.flush()
            os.killpg(pgid, signal.SIGKILL)  # ends the watchdog too: nothing of the group is left
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
