"""JupyterHub for real: two students log in, get the lessons with nbgitpuller, run lesson 01 on their own
servers through the hub's proxy, and each student's requests reach the backend with their own key."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from hubsupport import CHROMIUM, ROOT, STUDENTS, VENV_BIN, Backend, Hub, run_in_terminal
from websockets.sync.client import connect

LESSON = "labkit/notebooks/01-first-request.ipynb"


def login(hub: Hub, name: str, password: str) -> requests.Response:
    """The login form, as a browser posts it (with the _xsrf cookie and field)."""
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30).raise_for_status()
    xsrf = session.cookies.get("_xsrf")
    return session.post(f"{hub.url}/hub/login?next=", data={"username": name, "password": password, "_xsrf": xsrf},
                        allow_redirects=False, timeout=30)


@pytest.fixture(scope="module")
def course_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The course as a git repository (what nbgitpuller pulls from): this checkout's lessons."""
    repo = tmp_path_factory.mktemp("course") / "labkit"
    shutil.copytree(ROOT / "notebooks", repo / "notebooks",
                    ignore=shutil.ignore_patterns("outputs", ".ipynb_checkpoints"))
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    commit(repo, "the course")
    return repo


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=TA", "-c", "user.email=ta@example.edu", *args], cwd=cwd,
                          check=True, capture_output=True, text=True, timeout=60).stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def gitpull(hub: Hub, name: str, repo: Path) -> list[dict]:
    """What the course's nbgitpuller link does, through the hub's proxy: the pull's event stream."""
    query = urlencode({"repo": f"file://{repo}", "branch": "main", "targetpath": "labkit"})
    headers = {"Authorization": f"token {hub.user_tokens[name]}"}
    events = []
    with requests.get(f"{hub.url}/user/{name}/git-pull/api?{query}", headers=headers, stream=True, timeout=120) as r:
        r.raise_for_status()
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1].get("phase") in ("finished", "error"):
                    break
    assert events and events[-1]["phase"] == "finished", f"nbgitpuller did not finish: {events[-3:]}"
    return events


def run_notebook(hub: Hub, name: str, path: str) -> list[dict]:
    """Execute every code cell of ``path`` on ``name``'s server, through the proxy and the kernel websocket.
    Returns, per code cell, its execute_reply status and its outputs' texts."""
    headers = {"Authorization": f"token {hub.user_tokens[name]}"}
    base = f"{hub.url}/user/{name}/api"
    nb = requests.get(f"{base}/contents/{path}", headers=headers, timeout=30)
    nb.raise_for_status()
    cells = [c for c in nb.json()["content"]["cells"] if c["cell_type"] == "code"]
    session = requests.post(f"{base}/sessions", headers=headers, timeout=60,
                            json={"path": path, "type": "notebook", "name": "", "kernel": {"name": "python3"}})
    session.raise_for_status()
    kernel, session_id = session.json()["kernel"]["id"], uuid.uuid4().hex
    results = []
    try:
        ws_url = f"{base}/kernels/{kernel}/channels".replace("http://", "ws://", 1)
        with connect(ws_url, additional_headers=headers, max_size=None, open_timeout=30) as ws:
            for cell in cells:
                msg_id = uuid.uuid4().hex
                ws.send(json.dumps({
                    "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": name,
                               "session": session_id, "version": "5.3"},
                    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                    "content": {"code": cell["source"], "silent": False, "store_history": True,
                                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
                }))
                texts: list[str] = []
                status, idle = None, False
                while status is None or not idle:
                    msg = json.loads(ws.recv(timeout=120))
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind, content = msg["msg_type"], msg["content"]
                    if kind == "execute_reply":
                        status = content["status"]
                    elif kind == "status" and content["execution_state"] == "idle":
                        idle = True
                    elif kind == "stream":
                        texts.append(content["text"])
                    elif kind in ("execute_result", "display_data", "update_display_data"):
                        texts.extend(v for v in content["data"].values() if isinstance(v, str))
                    elif kind == "error":
                        texts.append(f"{content['ename']}: {content['evalue']}")
                results.append({"source": cell["source"], "status": status, "text": "".join(texts)})
    finally:
        requests.delete(f"{base}/sessions/{session.json()['id']}", headers=headers, timeout=30)
    return results


@pytest.fixture(scope="module")
def students(hub: Hub) -> Hub:
    """Both students logged in through the form, their servers started, a token each to reach them."""
    for name in STUDENTS:
        ok = login(hub, name, hub.password)
        assert ok.status_code == 302 and "jupyterhub-session-id" in ok.cookies, (ok.status_code, hub.log_tail())
        r = hub.api("POST", f"/users/{name}/server")
        assert r.status_code in (201, 202), (r.status_code, r.text, hub.log_tail())
    for name in STUDENTS:
        for _ in range(120):
            model = hub.api("GET", f"/users/{name}").json()
            if model["servers"].get("", {}).get("ready"):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"{name}'s server was not ready in 60 s:\n{hub.log_tail()}")
        token = hub.api("POST", f"/users/{name}/tokens", json={"scopes": [f"access:servers!user={name}"],
                                                                "note": "labkit hub test"})
        assert token.status_code == 201, token.text
        hub.user_tokens[name] = token.json()["token"]
    return hub


def test_a_wrong_password_is_refused(hub: Hub) -> None:
    assert login(hub, STUDENTS[0], "not-the-password").status_code == 403


def test_each_student_runs_lesson_01_with_their_own_key(students: Hub, backend: Backend, course_repo: Path) -> None:
    repo = course_repo
    for name in STUDENTS:
        gitpull(students, name, repo)
        mark = len(backend.recorder.seen)
        cells = run_notebook(students, name, LESSON)
        failed = [c for c in cells if c["status"] != "ok"]
        assert not failed, f"{name}: cells failed on the hub:\n" + "\n---\n".join(
            f"{c['source']}\n=> {c['text'][-800:]}" for c in failed)
        out = "\n".join(c["text"] for c in cells)
        assert f"base_url = {backend.base_url}" in out  # the hub's LABKIT_BASE_URL reached the kernel
        doc_answer = next(c["text"] for c in cells if "collected_messages" in c["source"])
        assert "451×300 pixels" in doc_answer and "assistant" not in doc_answer  # chelsea.jpg, decoded by the backend
        assert "结束原因： stop" in out
        for key in backend.keys.values():
            assert key not in out, "an API key appeared in a notebook's output"
        seen = backend.since(mark)
        chats = [s for s in seen if s.path.endswith("/chat/completions")]
        assert len(chats) >= 3, f"{name}: expected the lesson's 3 requests, the backend saw {len(chats)}"
        assert all(s.key == backend.keys[name] for s in seen), \
            f"{name}: a request reached the backend without {name}'s own key"
        assert all(s.status == 200 for s in seen), [(s.path, s.status) for s in seen]


def test_a_students_terminal_finds_labkit(students: Hub) -> None:
    name = STUDENTS[0]
    seen = run_in_terminal(f"{students.url}/user/{name}", {"Authorization": f"token {students.user_tokens[name]}"},
                           "command -v labkit; labkit workspace --help | head -n 1")
    assert str(VENV_BIN / "labkit") in seen and "usage: labkit workspace" in seen, seen[-800:]


def test_nbgitpuller_adds_new_lessons_and_keeps_a_students_edits(students: Hub, course_repo: Path) -> None:
    name, repo = STUDENTS[1], course_repo
    gitpull(students, name, repo)
    headers = {"Authorization": f"token {students.user_tokens[name]}"}
    url = f"{students.url}/user/{name}/api/contents/{LESSON}"
    nb = requests.get(url, headers=headers, timeout=30).json()["content"]
    nb["cells"][0]["source"] += "\n\n我的笔记：先看图片尺寸。"
    put = requests.put(url, headers=headers, json={"type": "notebook", "format": "json", "content": nb}, timeout=30)
    assert put.status_code == 200, put.text
    shutil.copy(repo / "notebooks" / "02-images.ipynb", repo / "notebooks" / "08-new-lesson.ipynb")
    commit(repo, "a new lesson")
    gitpull(students, name, repo)
    mine = requests.get(url, headers=headers, timeout=30).json()["content"]
    assert mine["cells"][0]["source"].endswith("我的笔记：先看图片尺寸。")
    new = requests.get(f"{students.url}/user/{name}/api/contents/labkit/notebooks/08-new-lesson.ipynb",
                       headers=headers, timeout=30)
    assert new.status_code == 200


def test_a_browser_login_lands_in_jupyterlab(students: Hub, course_repo: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"no browser at {CHROMIUM}: `apt-get install chromium` (make test-hub does)"
    name = STUDENTS[0]
    gitpull(students, name, course_repo)  # the file browser then shows the course's folder
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(f"{students.url}/hub/login", timeout=60_000)
            page.fill("#username_input", name)
            page.fill("#password_input", students.password)
            page.click("#login_submit")
            page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000)
            page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
            page.wait_for_selector(".jp-DirListing-itemText:has-text('labkit')", timeout=60_000)
            page.screenshot(path=str(tmp_path / "lab.png"))
        finally:
            browser.close()
