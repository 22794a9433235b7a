"""Fixtures for tests/hub: a key-enforcing practice backend that records which key each request carried,
the students as real system users, and the hub deploy/one-machine.sh installed, on loopback.

Run with `make test-hub` (scripts/test-hub.sh installs configurable-http-proxy and chromium, then runs the
recipe deploy/one-machine.sh).
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from hubsupport import (
    HUB_ETC,
    HUB_WORK,
    STUDENTS,
    STUDENTS_GROUP,
    Backend,
    Hub,
    KeyRecorder,
    own_processes,
    running_hub,
)

from labkit.practice import PracticeConfig, create_app


@pytest.fixture(scope="session", autouse=True)
def sigterm_runs_finalizers() -> Iterator[None]:
    """`timeout` (scripts/test-hub.sh) sends SIGTERM: turn it into KeyboardInterrupt so fixtures clean up."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def backend() -> Iterator[Backend]:
    """A fast practice server (FastChat dialect) that accepts only the students' keys."""
    keys = {name: f"sk-{name}-{secrets.token_hex(12)}" for name in STUDENTS}
    recorder = KeyRecorder(create_app(PracticeConfig(fast=True, api_keys=tuple(keys.values()))))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(recorder, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the keyed practice server did not start"
        time.sleep(0.02)
    try:
        yield Backend(f"http://127.0.0.1:{port}/api/v1", keys, recorder)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="session")
def accounts(backend: Backend) -> Iterator[str]:
    """The students as real system users in the recipe's group (homes made 0755, as Debian's useradd does:
    the hub must make them private), each with a password for the login form and a line in the keys file
    the recipe made. Yields the password; the users and their homes are removed at the end."""
    assert (HUB_ETC / "jupyterhub_config.py").is_file(), \
        f"no {HUB_ETC}/jupyterhub_config.py: run `make test-hub` (it runs deploy/one-machine.sh first)"
    password = secrets.token_urlsafe(12)
    homes = HUB_WORK / "home"
    homes.mkdir(mode=0o755, exist_ok=True)
    made = []
    try:
        for name in STUDENTS:
            assert subprocess.run(["id", name], capture_output=True).returncode != 0, f"{name} exists already"
            subprocess.run(["useradd", "--create-home", "--base-dir", str(homes), "--key", "HOME_MODE=0755",
                            "--groups", STUDENTS_GROUP, "--shell", "/bin/bash", name], check=True)
            made.append(name)
        subprocess.run(["chpasswd"], input="".join(f"{n}:{password}\n" for n in STUDENTS), text=True, check=True)
        with (HUB_ETC / "keys.csv").open("a", newline="") as f:  # the admin's step: one line per student
            csv.writer(f).writerows(backend.keys.items())
        yield password
    finally:
        for name in made:
            for pid in own_processes(homes / name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["userdel", "--remove", name], capture_output=True)


@pytest.fixture(scope="session")
def hub(backend: Backend, accounts: str) -> Iterator[Hub]:
    """The recipe's hub in front of the key-recording backend (LABKIT_BASE_URL set, as for a course backend)."""
    with running_hub("main", accounts, {"LABKIT_BASE_URL": backend.base_url}) as hub:
        yield hub
