"""Fixtures for the tests against FastChat 0.2.36's real front end (controller + openai_api_server).

Run with ``make test-fastchat`` (scripts/test-fastchat.sh): it installs FastChat into
``.venv-fastchat/``, starts the controller, the API server and our model worker
(scripts/fastchat_worker.py) on free loopback ports, and passes their addresses in
``FASTCHAT_TEST_BASE_URL`` / ``FASTCHAT_TEST_CONTROLLER`` / ``FASTCHAT_TEST_LOGS`` / ``FASTCHAT_TEST_PYTHON`` (names outside
``LABKIT_*`` so the isolation in tests/conftest.py keeps them). Without them every test here is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import labkit
from labkit.practice import serve_in_thread

FRONT_URL = os.environ.get("FASTCHAT_TEST_BASE_URL", "")
CONTROLLER_URL = os.environ.get("FASTCHAT_TEST_CONTROLLER", "")
LOGS = Path(os.environ.get("FASTCHAT_TEST_LOGS", "") or "/nonexistent")
MODEL = "llava-v1.6-34b"
API_KEY = "dummy_key"  # the course backend takes any key


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
def practice_fastchat_url() -> Iterator[str]:
    """labkit's practice server in its FastChat dialect (fast pacing), to compare with the real front."""
    with serve_in_thread(fast=True, dialect="fastchat") as url:
        yield url


@pytest.fixture(scope="session")
def env_on_front(front_url: str) -> dict[str, str]:
    """An environment for child processes (CLI, notebooks) that points labkit at the real front."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    env.update(LABKIT_BASE_URL=front_url, LABKIT_API_KEY=API_KEY)
    return env
