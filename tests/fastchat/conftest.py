"""Fixtures for the tests against FastChat 0.2.36's real front end (controller + openai_api_server).

Run with ``make test-fastchat`` (scripts/test-fastchat.sh): it installs FastChat into
``.venv-fastchat/``, starts the controller, the API server and our model worker
(scripts/fastchat_worker.py) on free loopback ports, and passes their addresses in
``FASTCHAT_TEST_BASE_URL`` / ``FASTCHAT_TEST_CONTROLLER`` / ``FASTCHAT_TEST_LOGS`` /
``FASTCHAT_TEST_PYTHON`` (names outside
``LABKIT_*`` so the isolation in tests/conftest.py keeps them). Without them every test here is skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import labkit

FRONT_URL = os.environ.get("FASTCHAT_TEST_BASE_URL", "")
CONTROLLER_URL = os.environ.get("FASTCHAT_TEST_CONTROLLER", "")
LOGS = Path(os.environ.get("FASTCHAT_TEST_LOGS", "") or "/nonexistent")
MODEL = "llava-v1.6-34b"
API_KEY = "dummy_key"  # the course backend takes any key


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from conformance import SUMMARY

    if SUMMARY:
        terminalreporter.section("differential conformance")
        for line in SUMMARY:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FRONT_URL:
        return
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason="no FastChat front: run `make test-fastchat` (scripts/test-fastchat.sh)")
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def front_url() -> str:
    """The real FastChat openai_api_server's base URL (``http://127.0.0.1:PORT/v1``)."""
    return FRONT_URL


@pytest.fixture(scope="session")
def controller_url() -> str:
    """The real FastChat controller's address."""
    return CONTROLLER_URL


@pytest.fixture(scope="session")
def logs() -> Path:
    """The folder holding controller.out, worker.out and api_server.out."""
    return LOGS


@pytest.fixture
def on_front(front_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """labkit configured through the environment, as a student would, for this test only."""
    monkeypatch.setenv("LABKIT_BASE_URL", front_url)
    monkeypatch.setenv("LABKIT_API_KEY", API_KEY)
    monkeypatch.setenv("LABKIT_QUIET", "1")
    labkit.reset_configuration()
    yield front_url
    labkit.reset_configuration()


@pytest.fixture(scope="session")
def practice_fastchat_url(fastchat_url: str) -> str:
    """labkit's practice server in its FastChat dialect (tests/conftest.py's), to compare with the real front."""
    return fastchat_url


@pytest.fixture(scope="session")
def env_on_front(front_url: str) -> dict[str, str]:
    """An environment for child processes (CLI, notebooks) that points labkit at the real front."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    env.update(LABKIT_BASE_URL=front_url, LABKIT_API_KEY=API_KEY, LABKIT_LANG="en")  # assertions read English
    return env


def _free_port() -> int:
    """A free loopback port (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def front_with_keys(controller_url: str, logs: Path) -> Iterator[str]:
    """FastChat's openai_api_server started with ``--api-keys course-key`` on the same controller."""
    python = os.environ.get("FASTCHAT_TEST_PYTHON", "")
    if not python:
        pytest.skip("FASTCHAT_TEST_PYTHON not set: run through scripts/test-fastchat.sh")
    port = _free_port()
    log = open(logs / "api_server_keys.out", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([python, "-m", "fastchat.serve.openai_api_server", "--host", "127.0.0.1",
                             "--port", str(port), "--controller-address", controller_url, "--api-keys", "course-key"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LOGDIR": str(logs)})
    # Same process group as pytest: the script's time-out or Ctrl-C reaches it even if pytest is killed.
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/models", timeout=2, trust_env=False).status_code == 401:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (logs / "api_server_keys.out").read_text()
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
