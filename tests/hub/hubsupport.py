"""Helpers for tests/hub: where things are, the key-recording backend wrapper, the hub's test config."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from support import answers, wait_until_answering
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # the dev venv (make lab)
CHP = Path(os.environ.get("LABKIT_CHP", ROOT / ".hub" / "node_modules" / ".bin" / "configurable-http-proxy"))
CHROMIUM = os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium")
# What scripts/test-hub.sh made with deploy/one-machine.sh (names without LABKIT_: tests/conftest.py clears those).
HUB_PREFIX = Path(os.environ.get("HUBTEST_PREFIX", "/opt/labkit-hub-test"))
HUB_BIN = HUB_PREFIX / "bin"  # the hub's environment: students' servers run from it
HUB_WORK = Path(os.environ.get("HUBTEST_WORK", "/nonexistent"))
HUB_ETC = HUB_WORK / "etc"
STUDENTS_GROUP = os.environ.get("HUBTEST_STUDENTS", "lkt-students")
TA = os.environ.get("HUBTEST_TA", "lkt-ta")
STUDENTS = ("lkt-ada", "lkt-bo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    """One request as the backend saw it."""

    method: str
    path: str
    key: str
    status: int = 0


class KeyRecorder:
    """ASGI wrapper around the practice app: records the bearer key and the status of every request
    (in memory only; nothing is printed)."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.seen: list[Seen] = []

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        entry = Seen(scope["method"], scope["path"], auth.removeprefix("Bearer ").strip())
        self.seen.append(entry)

        async def recording_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
            await send(message)  # type: ignore[operator]

        await self.app(scope, receive, recording_send)  # type: ignore[operator]


@dataclass
class Backend:
    base_url: str
    keys: dict[str, str]
    recorder: KeyRecorder

    def since(self, mark: int) -> list[Seen]:
        return self.recorder.seen[mark:]


HUB_CONFIG = """\
# Written by tests/hub/conftest.py: the configuration deploy/one-machine.sh installed, then loopback
# addresses, a state folder of this hub's own and the test driver's service token. The login (PAM, the
# students' group), the spawner (real system users) and the services are the recipe's.
c = get_config()  # noqa: F821
load_subconfig({config!r})  # noqa: F821

c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.pid_file = {state!r} + "/proxy.pid"
c.JupyterHub.pid_file = {state!r} + "/hub.pid"
c.JupyterHub.db_url = "sqlite:///" + {state!r} + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = {state!r} + "/cookie_secret"
c.Spawner.ip = "127.0.0.1"

c.JupyterHub.services = list(c.JupyterHub.services) + [{{"name": "labkit-test", "api_token": {service_token!r}}}]
c.JupyterHub.load_roles = list(c.JupyterHub.load_roles) + [{{
    "name": "labkit-test", "services": ["labkit-test"],
    "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "list:users", "read:users"],
}}]
"""


@dataclass
class Hub:
    url: str
    password: str
    service_token: str
    home: Path
    log: Path
    user_tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"token {self.service_token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


def own_processes(folder: Path) -> list[int]:
    """PIDs of processes working inside ``folder`` (the students' servers and kernels this test started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids




def run_in_terminal(server: str, headers: dict[str, str], command: str, timeout: float = 60) -> str:
    """Open a JupyterLab terminal on ``server`` (a Jupyter server's base URL), type ``command``, and return
    what the terminal showed up to the end marker."""
    terminal = requests.post(f"{server}/api/terminals", headers=headers, timeout=30)
    terminal.raise_for_status()
    name = terminal.json()["name"]
    seen = ""
    try:
        with connect(f"{server.replace('http', 'ws', 1)}/terminals/websocket/{name}", additional_headers=headers,
                     open_timeout=30) as ws:
            ws.send(json.dumps(["stdin", command + "; echo END-$((40 + 2))\r"]))
            deadline = time.monotonic() + timeout
            while "END-42" not in seen and time.monotonic() < deadline:
                try:
                    kind, *rest = json.loads(ws.recv(timeout=5))
                except TimeoutError:
                    continue
                if kind == "stdout":
                    seen += rest[0]
    finally:
        requests.delete(f"{server}/api/terminals/{name}", headers=headers, timeout=30)
    assert "END-42" in seen, f"the terminal did not answer: {seen[-500:]!r}"
    return seen


@contextlib.contextmanager
def running_hub(name: str, password: str, env_extra: dict[str, str]) -> Iterator[Hub]:
    """The recipe's hub (its own jupyterhub, the configuration it installed) on loopback ports, as root."""
    assert CHP.exists(), f"no configurable-http-proxy at {CHP}: run `make test-hub` (it installs it into .hub/)"
    state = HUB_WORK / f"state-{name}"
    state.mkdir(mode=0o700)
    port = free_port()
    hub = Hub(url=f"http://127.0.0.1:{port}", password=password, service_token=secrets.token_hex(24),
              home=HUB_WORK / "home", log=state / "hub.log")
    config = state / "jupyterhub_config.py"
    config.write_text(HUB_CONFIG.format(
        config=str(HUB_ETC / "jupyterhub_config.py"), port=port, hub_port=free_port(), api_port=free_port(),
        state=str(state), service_token=hub.service_token))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_", "JUPYTER", "VIRTUAL_ENV"))}
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(16), **env_extra)
    # Same process group as the test: `timeout` and Ctrl-C reach the hub, which then stops the proxy and servers.
    with hub.log.open("wb") as log:
        proc = subprocess.Popen([str(HUB_BIN / "jupyterhub"), "-f", str(config)], cwd=state, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_answering(proc, lambda: answers(f"{hub.url}/hub/api/"), what="JupyterHub", seconds=60,
                             tail=hub.log_tail)
        yield hub
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pid in own_processes(HUB_WORK / "home") + own_processes(state):  # anything the hub failed to stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
