"""Helpers shared by the benchmarks: a practice server in its own process, percentiles."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "notebooks", "images")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def practice_server(*args: str, nofile: int | None = None,
                    log: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """`labkit practice ARGS` in a separate process (one server process); yields (base URL, pid).

    ``nofile`` starts it under that open-file limit (`ulimit -n`); with ``log`` its stderr is kept and
    appended there once it has stopped.
    """
    port = free_port()

    def limit() -> None:
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    # The log goes to a file, never a pipe read only at the end: a full pipe would stall the server.
    stderr = tempfile.TemporaryFile() if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "practice", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=limit, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the practice server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None and not isinstance(stderr, int):
            stderr.seek(0)
            log.append(stderr.read().decode(errors="replace"))
            stderr.close()


@contextmanager
def practice_process(*args: str) -> Iterator[str]:
    """`labkit practice ARGS` in a separate process (one server process); yields its base URL."""
    with practice_server(*args) as (url, _pid):
        yield url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
