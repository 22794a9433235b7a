"""Shared fixtures: an isolated environment for every test, and practice servers in both dialects."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import labkit
from labkit.practice import serve_in_thread


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Notebooks run by nbval in the same session use the embedded practice server, whatever this
    machine's environment says (their kernels inherit it; the practice server's own
    LABKIT_PRACTICE_* settings, such as fast pacing, are kept; so is LABKIT_SKIP_BROWSER, read by tests/browser)."""
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")) and not name.startswith("LABKIT_PRACTICE_") \
                and name != "LABKIT_SKIP_BROWSER":
            del os.environ[name]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No LABKIT_*/OPENAI_* variable from the machine leaks into a test; configure() is undone."""
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)
    labkit.reset_configuration()
    yield
    labkit.reset_configuration()


@pytest.fixture(scope="session")
def fastchat_url() -> Iterator[str]:
    with serve_in_thread(fast=True, dialect="fastchat") as url:
        yield url


@pytest.fixture(scope="session")
def vllm_url() -> Iterator[str]:
    with serve_in_thread(fast=True, dialect="vllm") as url:
        yield url


@pytest.fixture(params=["fastchat", "vllm"])
def any_url(request: pytest.FixtureRequest, fastchat_url: str, vllm_url: str) -> str:
    return fastchat_url if request.param == "fastchat" else vllm_url
