"""JupyterHub for real: two students log in, get the lessons with nbgitpuller, run lesson 01 on their own
servers through the hub's proxy, and each student's requests reach the backend with their own key."""

from __future__ import annotations

import json
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from hubsupport import (
    CHROMIUM,
    HUB_BIN,
    HUB_ETC,
    HUB_WORK,
    ROOT,
    STUDENTS,
    Backend,
    Hub,
    free_port,
    run_in_terminal,
)
from support import processes_showing
from websockets.sync.client import connect

LESSON = "labkit/notebooks/01-first-request.ipynb"


def login(hub: Hub, name: str, password: str) -> requests.Response:
    """The login form, as a browser posts it (with the _xsrf cookie and field)."""
    session = requests.Session()
    session.get(f"{hub.url}/hub/login", timeout=30).raise_for_status()
    xsrf = session.cookies.get("_xsrf")
    return session.post(f"{hub.url}/hub/login?next=", data={"username": name, "password": password, "_xsrf": xsrf},
                        allow_redirects=False, timeout=30)


@dataclass
class Course:
    """The course repository as students reach it (``url``, served by ``git daemon``), and the TA's clone."""

    url: str
    work: Path


@pytest.fixture(scope="module")
def course_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Course]:
    """This checkout's lessons in a repository that students clone over git:// (as from a forge: a file://
    path owned by root is refused by git for another user, 'dubious ownership')."""
    served = HUB_WORK / "git"
    bare = served / "labkit.git"
    git(HUB_WORK, "init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path_factory.mktemp("course") / "labkit"
    shutil.copytree(ROOT / "notebooks", work / "notebooks",
                    ignore=shutil.ignore_patterns("outputs", ".ipynb_checkpoints"))
    git(work.parent, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(bare))
    commit(work, "the course")
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}",
                               "--listen=127.0.0.1", f"--port={port}", str(served)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield Course(f"git://127.0.0.1:{port}/labkit", work)
    finally:
        daemon.terminate()
        daemon.wait(10)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=TA", "-c", "user.email=ta@example.edu", *args], cwd=cwd,
                          check=True, capture_output=True, text=True, timeout=60).stdout


def commit(repo: Path, message: str) -> None:
    """Commit the TA's changes and publish them to the repository students pull from."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "push", "-q", "origin", "main")


def gitpull(hub: Hub, name: str, course: Course) -> list[dict]:
    """What the course's nbgitpuller link does, through the hub's proxy: the pull's event stream."""
    query = urlencode({"repo": course.url, "branch": "main", "targetpath": "labkit"})
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


def test_each_student_runs_lesson_01_with_their_own_key(students: Hub, backend: Backend, course_repo: Course) -> None:
    for name in STUDENTS:
        gitpull(students, name, course_repo)
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
    # the hub sets LABKIT_LANG=zh for every student: argparse's own words are Chinese too
    assert str(HUB_BIN / "labkit") in seen and "用法：labkit workspace" in seen, seen[-800:]


def test_nbgitpuller_adds_new_lessons_and_keeps_a_students_edits(students: Hub, course_repo: Course) -> None:
    name, repo = STUDENTS[1], course_repo.work
    gitpull(students, name, course_repo)
    headers = {"Authorization": f"token {students.user_tokens[name]}"}
    url = f"{students.url}/user/{name}/api/contents/{LESSON}"
    nb = requests.get(url, headers=headers, timeout=30).json()["content"]
    nb["cells"][0]["source"] += "\n\n我的笔记：先看图片尺寸。"
    put = requests.put(url, headers=headers, json={"type": "notebook", "format": "json", "content": nb}, timeout=30)
    assert put.status_code == 200, put.text
    shutil.copy(repo / "notebooks" / "02-images.ipynb", repo / "notebooks" / "08-new-lesson.ipynb")
    commit(repo, "a new lesson")
    gitpull(students, name, course_repo)
    mine = requests.get(url, headers=headers, timeout=30).json()["content"]
    assert mine["cells"][0]["source"].endswith("我的笔记：先看图片尺寸。")
    new = requests.get(f"{students.url}/user/{name}/api/contents/labkit/notebooks/08-new-lesson.ipynb",
                       headers=headers, timeout=30)
    assert new.status_code == 200


def test_a_browser_login_lands_in_jupyterlab(students: Hub, course_repo: Course, tmp_path: Path) -> None:
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


def readme_link(hub: Hub, course: Course) -> str:
    """The README's nbgitpuller link, with this hub and this course repository in it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"https://HUB/hub/user-redirect/git-pull\?\S+", text)
    assert match, "the README has no nbgitpuller link"
    link = match.group(0).replace("https://HUB", hub.url)
    query = dict(parse_qsl(urlsplit(link).query))
    assert query["urlpath"] == "lab/tree/labkit/notebooks/00-setup.ipynb", query
    query["repo"] = course.url  # the README's ORG/labkit on a forge: here, the same lessons over git://
    return link.split("?", 1)[0] + "?" + urlencode(query)


def test_the_readme_link_lands_on_lesson_00(students: Hub, course_repo: Course) -> None:
    from playwright.sync_api import sync_playwright

    name = STUDENTS[1]
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
            page.goto(readme_link(students, course_repo), timeout=60_000)
            page.wait_for_url(f"**/user/{name}/lab/tree/labkit/notebooks/00-setup.ipynb**", timeout=120_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
        finally:
            browser.close()
    lesson = Path(pwd.getpwnam(name).pw_dir) / "labkit" / "notebooks" / "00-setup.ipynb"
    assert lesson.is_file() and lesson.stat().st_uid == pwd.getpwnam(name).pw_uid


def test_homes_keys_and_servers_are_private(students: Hub) -> None:
    ada, bo = STUDENTS
    for name in STUDENTS:
        home = Path(pwd.getpwnam(name).pw_dir)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700, f"{name}'s home is {oct(home.stat().st_mode)}"
    bo_uid = pwd.getpwnam(bo).pw_uid
    bo_server = next(int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
                     if p.parent.stat().st_uid == bo_uid and b"jupyterhub-singleuser" in p.read_bytes())
    keys = HUB_ETC / "keys.csv"
    bo_home = pwd.getpwnam(bo).pw_dir
    checks = {
        "HOME": f"ls {bo_home}",
        "NOTEBOOK": f"cat {bo_home}/labkit/notebooks/01-first-request.ipynb",
        "KEYS": f"cat {keys}",
        "ENVIRON": f"cat /proc/{bo_server}/environ",
    }
    command = "; ".join(f"{{ {cmd} >/dev/null 2>&1 && echo READ-{what}-$((1+1)) || echo DENIED-{what}-$((1+1)); }}"
                        for what, cmd in checks.items())
    seen = run_in_terminal(f"{students.url}/user/{ada}", {"Authorization": f"token {students.user_tokens[ada]}"},
                           command + "; echo LANG-IS-$LABKIT_LANG-END")
    for what in checks:
        assert f"DENIED-{what}-2" in seen and f"READ-{what}-2" not in seen, f"{ada} could read {bo}'s {what}"
    assert "LANG-IS-zh-END" in seen, "the course language reaches the students' servers"


def test_no_key_on_any_command_line(students: Hub, backend: Backend) -> None:
    for name, key in backend.keys.items():
        assert processes_showing(key) == [], f"{name}'s key is on a command line"
