"""The recipe's hub without a course backend (LABKIT_BASE_URL unset): it runs the practice server as a service,
its keys read from the keys file (never on its command line), and its idle culler stops an idle server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests
from hubsupport import STUDENTS, Backend, Hub, free_port, running_hub
from support import processes_showing

IDLE_SECONDS = 20


@pytest.fixture(scope="module")
def culling_hub(accounts: str) -> Iterator[tuple[Hub, int]]:
    practice_port = free_port()
    env = {"LABKIT_HUB_IDLE_TIMEOUT": str(IDLE_SECONDS), "LABKIT_PRACTICE_PORT": str(practice_port)}
    with running_hub("culler", accounts, env) as hub:
        yield hub, practice_port


def test_the_practice_service_takes_the_students_keys_from_the_file(culling_hub: tuple[Hub, int],
                                                                    backend: Backend) -> None:
    hub, port = culling_hub
    url = f"http://127.0.0.1:{port}/v1/models"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url, timeout=2)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, f"the practice service did not start:\n{hub.log_tail()}"
            time.sleep(0.5)
    for key in backend.keys.values():
        assert requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
        assert processes_showing(key) == []
    assert requests.get(url, headers={"Authorization": "Bearer sk-not-a-student"}, timeout=10).status_code == 401


def test_the_culler_stops_an_idle_server(culling_hub: tuple[Hub, int]) -> None:
    hub, _ = culling_hub
    name = STUDENTS[0]
    assert hub.api("POST", f"/users/{name}").status_code in (201, 409)  # known to this hub (a login does that)
    r = hub.api("POST", f"/users/{name}/server")
    assert r.status_code in (201, 202), (r.status_code, r.text, hub.log_tail())
    deadline = time.monotonic() + 60
    while not hub.api("GET", f"/users/{name}").json()["servers"].get("", {}).get("ready"):
        assert time.monotonic() < deadline, f"{name}'s server did not start:\n{hub.log_tail()}"
        time.sleep(0.5)
    started = time.monotonic()
    while hub.api("GET", f"/users/{name}").json()["servers"]:
        assert time.monotonic() - started < IDLE_SECONDS + 90, \
            f"the idle server was not culled after {IDLE_SECONDS} s idle:\n{hub.log_tail()}"
        time.sleep(1)
    log = hub.log.read_text(errors="replace")
    assert "No module named jupyterhub_idle_culler" not in log
    assert re.search(rf"DELETE /hub/api/users/{name}/server \(idle-culler@", log), "the culler stopped it"
