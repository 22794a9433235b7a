"""One practice server per user (issue 18): found and shared by every kernel, surviving restarts,
ending when idle, never fooled by a stale state file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labkit.practice import serve_in_thread
from labkit.practice.shared import shared_enabled

pytestmark = pytest.mark.skipif(not shared_enabled({}), reason="no file locks here: each process keeps its own")

KERNEL = ("import os, sys, labkit\n"
          "url = str(labkit.client().base_url)\n"
          "print(url, os.getpid(), 'uvicorn' in sys.modules, flush=True)\n"
          "r = labkit.chat('Hi', display=False, max_tokens=3)\n"
          "assert r.text, r\n"
          "sys.stdin.readline()  # stay alive until told\n")


class Users:
    """Kernels (Python processes using labkit's embedded default) of one user whose state folder is a
    temporary one; every shared server they start is ended afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "XDG_RUNTIME_DIR": str(root),
                    "LABKIT_PRACTICE_FAST": "1", "LABKIT_PRACTICE_IDLE_MINUTES": "0.05", "LABKIT_LANG": "en"}
        self.kernels: list[subprocess.Popen[str]] = []
        self.servers: set[int] = set()

    @property
    def folder(self) -> Path:
        return self.root / "labkit"

    def states(self) -> list[dict]:
        found = [json.loads(p.read_text()) for p in self.folder.glob("practice-*.json")]
        self.servers.update(s["pid"] for s in found)
        return found

    def kernel(self) -> tuple[subprocess.Popen[str], str, int]:
        """A kernel that has had its first answer; (process, base URL, the server's pid)."""
        proc = subprocess.Popen([sys.executable, "-c", KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)
        self.kernels.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        url, _pid, heavy = line.split()
        assert heavy == "False", "a kernel that only finds the shared server imports no web framework"
        [state] = self.states()
        return proc, url, state["pid"]

    def close(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(60)

    def end(self) -> None:
        for proc in self.kernels:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.states()
        for pid in self.servers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    u = Users(tmp_path)
    yield u
    u.end()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive either
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_two_kernels_starting_at_once_share_one_server(users: Users) -> None:
    results: list[tuple[str, int]] = []

    def start() -> None:
        _proc, url, pid = users.kernel()
        results.append((url, pid))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2 and results[0] == results[1], results
    assert len(users.states()) == 1
    info = os.stat(next(users.folder.glob("practice-*.json")))
    assert info.st_mode & 0o777 == 0o600 and os.stat(users.folder).st_mode & 0o777 == 0o700


def test_a_restarted_kernel_finds_the_server(users: Users) -> None:
    users.env["LABKIT_PRACTICE_IDLE_MINUTES"] = "1"
    first, url, pid = users.kernel()
    users.close(first)  # the kernel restarts: a new process
    _second, url2, pid2 = users.kernel()
    assert (url2, pid2) == (url, pid)


def test_the_server_stays_while_a_kernel_lives_and_ends_when_idle(users: Users) -> None:
    kernel, url, pid = users.kernel()
    time.sleep(5)  # past the idle time (3 s), but a kernel is alive: the server stays
    assert alive(pid)
    users.close(kernel)
    assert wait_until(lambda: not alive(pid), 30), "the server outlived its kernels and its idle time"
    assert users.states() == []
    log = next(users.folder.glob("practice-*.log")).read_text()
    assert "no kernel alive and no request" in log


def test_a_stale_state_file_is_never_trusted(users: Users) -> None:
    """A dead pid, and a port now answered by someone else's server that cannot prove the secret."""
    _proc, url, pid = users.kernel()
    state_file = next(users.folder.glob("practice-*.json"))
    state = json.loads(state_file.read_text())
    with serve_in_thread(fast=True) as impostor:
        port = int(impostor.split(":")[2].split("/")[0])
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        for stale in ({**state, "port": port},  # the server is alive, but the port is another's
                      {**state, "port": port, "pid": 2 ** 22 + 1}):  # a dead pid
            state_file.write_text(json.dumps(stale))
            _p, url2, pid2 = users.kernel()
            assert f":{port}/" not in url2 and pid2 != pid
            users.states()
            pid = pid2


def test_a_state_file_others_could_write_is_ignored(users: Users) -> None:
    _proc, url, pid = users.kernel()
    state_file = next(users.folder.glob("practice-*.json"))
    os.chmod(state_file, 0o666)
    _p, url2, pid2 = users.kernel()
    assert pid2 != pid and os.stat(state_file).st_mode & 0o777 == 0o600


def test_labkit_practice_shared_0_keeps_a_private_server_in_the_process(tmp_path: Path) -> None:
    code = ("import threading, labkit\n"
            "url = str(labkit.client().base_url)\n"
            "print(url, any(t.name.startswith('labkit-practice-') for t in threading.enumerate()))\n")
    env = {"PATH": os.environ.get("PATH", ""), "XDG_RUNTIME_DIR": str(tmp_path), "LABKIT_PRACTICE_SHARED": "0",
           "LABKIT_PRACTICE_FAST": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "True" and not (tmp_path / "labkit").exists()


def test_the_health_proof_needs_the_secret(users: Users) -> None:
    _proc, url, pid = users.kernel()
    state = users.states()[0]
    from labkit.practice.shared import CHALLENGE_HEADER, PROOF_HEADER, proof

    r = httpx.get(f"http://127.0.0.1:{state['port']}/health", headers={CHALLENGE_HEADER: "abc"})
    assert r.status_code == 200 and r.headers[PROOF_HEADER] == proof(state["secret"], "abc")
    assert state["secret"] not in r.text and all(state["secret"] not in v for v in r.headers.values())
    assert httpx.get(f"http://127.0.0.1:{state['port']}/health").status_code == 200  # plain /health as before
    with socket.create_connection(("127.0.0.1", state["port"])):
        pass


def test_the_server_carries_none_of_the_users_keys(users: Users) -> None:
    users.env.update({"LABKIT_API_KEY": "sk-course-secret-123456", "OPENAI_API_KEY": "sk-openai-secret-654321"})
    _proc, _url, pid = users.kernel()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"LABKIT_PRACTICE_FAST=1" in environ
    assert b"secret-123456" not in environ and b"secret-654321" not in environ
