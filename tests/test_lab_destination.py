"""Where the student's files land: `labkit assignment NAME` writes into the workspace's labs/ folder, never
into the course's git checkout outside the workspace; JupyterLab (and so its terminal) runs in the workspace."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import answers, wait_until_answering

from labkit.cli import main
from labkit.workspace import MARKER, course_checkout, find_workspace, lab_destination, sync

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course checkout as a student has it after `make lab`: a git work tree with its lessons and work/."""
    root = tmp_path / "course"
    (root / ".git").mkdir(parents=True)
    (root / "labkit" / "assignments").mkdir(parents=True)
    shutil.copytree(ROOT / "notebooks" / "images", root / "notebooks" / "images")
    shutil.copy(ROOT / "notebooks" / "00-setup.ipynb", root / "notebooks")
    sync(root / "notebooks", root / "work")
    return root


def test_without_a_destination_the_lab_goes_into_the_workspaces_labs_folder(
    course: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(course / "work")  # JupyterLab's terminal opens here
    assert main(["assignment", "multimodal-request"]) == 0
    written = course / "work" / "labs" / "multimodal-request.ipynb"
    assert written.is_file() and str(written) in capsys.readouterr().out
    assert "BEGIN SOLUTION" not in written.read_text(encoding="utf-8")
    for start in (course, course / "work" / "labs", course / "notebooks"):  # from the course's folder too
        assert lab_destination(None, start=start) == (course / "work" / "labs").resolve()


@pytest.mark.parametrize("dest", ["handout", "notebooks", "labkit/assignments", "."])
def test_a_destination_in_the_checkout_outside_the_workspace_is_refused_with_where_to_put_it(
    course: Path, dest: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(course)
    before = sorted(p for p in course.rglob("*"))
    assert main(["assignment", "batch-evaluation", dest]) == 2
    err = capsys.readouterr().err
    assert f"{dest} is inside the course's git checkout {course.resolve()}" in err, err
    assert str(course.resolve() / "work" / "labs") in err and "`labkit assignment batch-evaluation`" in err, err
    assert sorted(p for p in course.rglob("*")) == before, "something was written"


def test_a_destination_inside_the_workspace_or_outside_the_checkout_is_used(course: Path, tmp_path: Path) -> None:
    assert lab_destination(course / "work" / "mine", start=course) == course / "work" / "mine"
    assert lab_destination(tmp_path / "handout", start=course) == tmp_path / "handout"
    assert lab_destination("elsewhere", start=tmp_path) == tmp_path / "elsewhere"
    assert lab_destination("labs", start=course / "work") == course / "work" / "labs"


def test_without_a_workspace_it_says_to_run_make_lab(tmp_path: Path, course: Path) -> None:
    home = tmp_path / "home"  # a hub's home, say: no checkout, no workspace; the lab goes where the student is
    home.mkdir()
    assert lab_destination(None, start=home) == home / "labs"
    shutil.rmtree(course / "work")
    with pytest.raises(Exception, match=r"No workspace found from .*`make lab`.*`labkit assignment lab-a DEST`"):
        lab_destination(None, name="lab-a", start=course / "notebooks")
    with pytest.raises(Exception, match=r"inside the course's git checkout .*Run `make lab` once") as refused:
        lab_destination(course / "handout", start=course)
    assert str(course / "work" / "labs") in str(refused.value)
    assert find_workspace(course) is None and course_checkout(course / "a" / "b") == course


def test_the_real_checkout_is_recognised() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not run from a git checkout")
    assert course_checkout(ROOT / "handout") == ROOT
    with pytest.raises(Exception, match="inside the course's git checkout"):
        lab_destination(ROOT / "handout", start=ROOT)


# --- JupyterLab's terminal ---------------------------------------------------------------------------------

def test_make_lab_runs_jupyterlab_inside_the_workspace() -> None:
    """The recipe: JupyterLab's own folder is the workspace, so a terminal (which starts in the server's
    folder unless told otherwise) opens there, like the file browser."""
    done = subprocess.run(["make", "-n", "-C", str(ROOT), "-o", ".venv/.labkit-installed", "lab",
                           "WORKSPACE=/some/work", "LAB_ARGS=--no-browser"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    command = next(line for line in done.stdout.splitlines() if "jupyter" in line)
    assert command.startswith('cd "/some/work" && ') and "lab --notebook-dir=." in command, done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _terminal_pwd(url: str, token: str, body: dict[str, str]) -> str:
    """Open a terminal as JupyterLab's launcher does (POST /api/terminals), type `pwd`, read the answer."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"token {token}"}
    made = await AsyncHTTPClient().fetch(HTTPRequest(f"{url}/api/terminals", method="POST", headers=headers,
                                                     body=json.dumps(body)))
    name = json.loads(made.body)["name"]
    ws = await websocket_connect(HTTPRequest(f"{url.replace('http', 'ws', 1)}/terminals/websocket/{name}",
                                             headers=headers))
    ws.write_message(json.dumps(["stdin", "echo WHERE=$(pwd)=END\r"]))
    seen, found = "", []
    deadline = time.monotonic() + 60
    while not found and time.monotonic() < deadline:
        message = await asyncio.wait_for(ws.read_message(), timeout=60)
        if message is None:
            break
        kind, *rest = json.loads(message)
        if kind == "stdout":
            seen += rest[0]
            found = re.findall(r"WHERE=(/[^\r\n]*?)=END", seen)  # the answer, not the echoed command
    ws.close()
    await AsyncHTTPClient().fetch(HTTPRequest(f"{url}/api/terminals/{name}", method="DELETE", headers=headers))
    assert found, f"the terminal did not answer: {seen[-500:]!r}"
    return found[0]


def test_a_real_jupyterlab_terminal_opens_in_the_workspace(tmp_path: Path) -> None:
    """`make lab`'s JupyterLab, started as the recipe starts it (in the workspace, the venv's bin on PATH)."""
    jupyter = Path(sys.executable).parent / "jupyter"
    if not jupyter.exists():
        pytest.skip("JupyterLab is not installed beside this Python (the lab extra)")
    work = tmp_path / "work"
    sync(ROOT / "notebooks", work)
    (work / "labs").mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV"))}
    env.update(HOME=str(tmp_path), SHELL="/bin/bash", PATH=f"{jupyter.parent}:{env.get('PATH', '/usr/bin:/bin')}")
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(jupyter), "lab", "--notebook-dir=.", "--ServerApp.terminado_settings="
                                 "shell_command=/bin/bash", "--no-browser", f"--port={port}",
                                 f"--IdentityProvider.token={token}", "--allow-root"],
                                cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, lambda: answers(f"{url}/api/status?token={token}"), what="JupyterLab",
                             seconds=90, tail=lambda: log.read_text()[-2000:])
        # the launcher sends the file browser's folder: "" at the top, "labs" inside it; none from the API
        where = {key: asyncio.run(_terminal_pwd(url, token, body))
                 for key, body in (("top", {"cwd": ""}), ("labs", {"cwd": "labs"}), ("none", {}))}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert where == {"top": str(work), "labs": str(work / "labs"), "none": str(work)}, where
    assert (work / MARKER).is_file()
