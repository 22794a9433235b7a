"""Shared fixtures: an isolated environment for every test, practice servers in both dialects, and
labkit configured for one of them (``configured_fastchat``, ``configured_vllm``, ``configured_any``)."""

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
    os.environ.setdefault("LABKIT_PRACTICE_IDLE_MINUTES", "1")  # their shared server ends a minute after them


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No LABKIT_*/OPENAI_* variable from the machine leaks into a test; configure() is undone.

    labkit speaks English here (LABKIT_LANG=en), whatever this machine's locale: the assertions read
    the English messages. A test of the Chinese ones sets LABKIT_LANG=zh; one that relies on the
    locale deletes LABKIT_LANG itself. The embedded practice server is a private one
    (LABKIT_PRACTICE_SHARED=0): no test leaves a shared one behind."""
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABKIT_LANG", "en")
    monkeypatch.setenv("LABKIT_PRACTICE_SHARED", "0")  # the embedded default in a test: private, ends with it
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


@pytest.fixture
def configured_fastchat(fastchat_url: str) -> str:
    """labkit pointed at the FastChat-dialect practice server (the course backend's wire format); its URL."""
    labkit.configure(base_url=fastchat_url)
    return fastchat_url


@pytest.fixture
def configured_vllm(vllm_url: str) -> str:
    """labkit pointed at the vLLM-dialect practice server; its URL."""
    labkit.configure(base_url=vllm_url)
    return vllm_url


@pytest.fixture
def configured_any(any_url: str) -> str:
    """labkit pointed at each dialect's practice server in turn (the test runs twice); its URL."""
    labkit.configure(base_url=any_url)
    return any_url
