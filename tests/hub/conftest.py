"""Fixtures for tests/hub: a key-enforcing practice backend that records which key each request carried,
and a real JupyterHub on loopback (loading deploy/jupyterhub_config.py).

Run with `make test-hub` (scripts/test-hub.sh installs jupyterhub, configurable-http-proxy and chromium).
"""

from __future__ import annotations

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
import requests
import uvicorn
from hubsupport import CHP, HUB_CONFIG, ROOT, STUDENTS, VENV_BIN, Backend, Hub, KeyRecorder, free_port, own_processes

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
def hub(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A real JupyterHub 6 on loopback, configured by deploy/jupyterhub_config.py plus test addresses."""
    assert CHP.exists(), f"no configurable-http-proxy at {CHP}: run `make test-hub` (it installs it into .hub/)"
    tmp = tmp_path_factory.mktemp("hub")
    (tmp / "home").mkdir()
    keys_file = tmp / "keys.csv"
    with keys_file.open("w", newline="") as f:
        csv.writer(f).writerows(backend.keys.items())
    keys_file.chmod(0o600)
    port = free_port()
    hub = Hub(url=f"http://127.0.0.1:{port}", password=secrets.token_urlsafe(12),
              service_token=secrets.token_hex(24), home=tmp / "home", log=tmp / "hub.log")
    config = tmp / "jupyterhub_config.py"
    config.write_text(HUB_CONFIG.format(
        deploy=str(ROOT / "deploy" / "jupyterhub_config.py"), port=port, hub_port=free_port(), api_port=free_port(),
        chp=str(CHP), tmp=str(tmp), singleuser=str(VENV_BIN / "jupyterhub-singleuser"),
        args=["--allow-root"] if os.geteuid() == 0 else [], service_token=hub.service_token)
        + f"c.SharedPasswordAuthenticator.user_password = {hub.password!r}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_", "JUPYTER"))}
    env.update(LABKIT_BASE_URL=backend.base_url, LABKIT_KEYS_FILE=str(keys_file),
               PATH=f"{VENV_BIN}:{os.path.dirname(CHP)}:{env.get('PATH', '/usr/bin:/bin')}",
               CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16))
    # Same process group as the test: `timeout` and Ctrl-C reach the hub, which then stops the proxy and servers.
    with hub.log.open("wb") as log:
        proc = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(config)], cwd=tmp, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"JupyterHub exited ({proc.returncode}):\n{hub.log_tail()}"
            assert time.monotonic() < deadline, f"JupyterHub did not answer within 60 s:\n{hub.log_tail()}"
            try:
                if requests.get(f"{hub.url}/hub/api/", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        yield hub
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in own_processes(tmp):  # anything the hub failed to stop
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
