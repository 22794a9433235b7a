"""`make lab` for real: it opens JupyterLab on the student's own copy of the lessons, and the terminal
inside JupyterLab finds `labkit` (the venv's bin is on PATH, and the terminal keeps that PATH)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from hubsupport import ROOT, VENV_BIN, free_port, run_in_terminal
from support import answers, wait_until_answering


@pytest.fixture
def make_lab(tmp_path: Path):  # type: ignore[no-untyped-def]
    """`make lab` with a workspace in tmp_path, as a student would start it (no venv on PATH)."""
    port, token = free_port(), secrets.token_hex(16)
    work = tmp_path / "work"
    path = ":".join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(":") if Path(p) != VENV_BIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_", "VIRTUAL_ENV", "JUPYTER"))}
    env.update(PATH=path, SHELL="/bin/bash", HOME=str(tmp_path), LABKIT_LANG="en")
    args = f"--no-browser --port={port} --IdentityProvider.token={token} --ServerApp.open_browser=False"
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        # -o: this venv is the one under test; never rebuild it here (make test does that)
        proc = subprocess.Popen(["make", "-C", str(ROOT), "-o", ".venv/.labkit-installed", "lab", f"WORKSPACE={work}",
                                 f"LAB_ARGS={args}"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, lambda: answers(f"{url}/api/status?token={token}"), what="JupyterLab (make lab)",
                             seconds=90, tail=lambda: log.read_text()[-3000:])
        yield url, token, work, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make, its shell and JupyterLab: the group this fixture started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_make_lab_opens_the_workspace_and_its_terminal_finds_labkit(make_lab) -> None:  # type: ignore[no-untyped-def]
    url, token, work, log = make_lab
    assert (work / "01-first-request.ipynb").is_file() and (work / "images" / "chelsea.jpg").is_file()
    assert "created with" in log.read_text()
    tree = requests.get(f"{url}/api/contents", params={"token": token}, timeout=30).json()
    assert "01-first-request.ipynb" in {item["name"] for item in tree["content"]}  # the lab opens on work/

    seen = run_in_terminal(url, {"Authorization": f"token {token}"},
                           "command -v labkit; labkit workspace --help | head -n 1; echo WHERE=$(pwd)")
    assert str(VENV_BIN / "labkit") in seen, f"the terminal did not find labkit: {seen[-800:]!r}"
    assert "usage: labkit workspace" in seen
    assert "command not found" not in seen
    assert f"WHERE={work}" in seen, f"the terminal did not open in the workspace: {seen[-800:]!r}"

