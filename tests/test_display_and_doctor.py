"""Live display throttling, the doctor, and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import labkit
from labkit.display import JupyterView
from labkit.doctor import doctor
from labkit.practice import serve_in_thread


class FakeHandle:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def update(self, body: object) -> None:
        self.log.append(body.data)  # type: ignore[attr-defined]


def test_jupyter_view_renders_o_n_and_ends_exact() -> None:
    log: list[str] = []

    def publish(body: object, display_id: bool) -> FakeHandle:
        log.append(body.data)  # type: ignore[attr-defined]
        return FakeHandle(log)

    clock = iter(i * 0.001 for i in range(100_000))  # a fast stream: one token a millisecond
    view = JupyterView(publish, clock=lambda: next(clock))
    text = ""
    for i in range(4000):
        delta = f" word{i}"
        text += delta
        view.update(delta)
    view.finish(text)
    assert log[-1] == text
    assert view.rendered_chars < 12 * len(text), "total rendering is linear in the answer's length"
    assert view.renders < 60


def test_jupyter_view_updates_at_least_twice_a_second() -> None:
    log: list[str] = []
    t = [0.0]
    view = JupyterView(lambda body, display_id: (log.append(body.data), FakeHandle(log))[1], clock=lambda: t[0])
    text = "x" * 10_000
    view.update(text)
    for _ in range(20):  # a slow stream: one character every 0.25 s on a long text
        t[0] += 0.25
        text += "y"
        view.update("y")
    assert len(log) >= 9


def test_doctor_reports_and_fixes(fastchat_url: str) -> None:
    lines: list[str] = []
    labkit.configure(base_url=fastchat_url, api_key="course-secret-123456")
    report = doctor(echo=lines.append)
    assert report.ok and report.ttft is not None
    assert "course-secret-123456" not in "\n".join(lines) and "…3456" in lines[0]
    assert any("lists 1 model(s): llava-v1.6-34b" in line for line in lines)
    labkit.configure(model="llava-v1.6-mistral-7b")
    report = doctor(echo=lines.append)
    assert not report.ok and "Set LABKIT_MODEL to one of: llava-v1.6-34b" in str(report)
    labkit.configure(base_url="http://127.0.0.1:9/v1")
    report = doctor(echo=lines.append)
    assert not report.ok and "Nothing is listening" in str(report)


def test_cli_doctor_and_chat(fastchat_url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "LABKIT_BASE_URL": fastchat_url}
    out = subprocess.run([sys.executable, "-m", "labkit", "doctor"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0 and "✓ streaming request" in out.stdout
    out = subprocess.run([sys.executable, "-m", "labkit", "chat", "What colour?", "--image",
                          "notebooks/images/rocket.jpg"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "blue" in out.stdout and "first token" in out.stderr
    env["LABKIT_BASE_URL"] = "http://127.0.0.1:9/v1"
    out = subprocess.run([sys.executable, "-m", "labkit", "doctor"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 1 and "Nothing is listening" in out.stdout


def test_cli_practice_serves_until_stopped(tmp_path: pytest.TempPathFactory) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "practice", "--port", str(port), "--fast",
                             "--dialect", "vllm"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        models = httpx.get(f"http://127.0.0.1:{port}/api/v1/models").json()
        assert models["data"][0]["owned_by"] == "vllm"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"LABKIT_BASE_URL=http://127.0.0.1:{port}/v1" in out


def test_serve_in_thread_binds_loopback() -> None:
    with serve_in_thread(fast=True) as url:
        assert url.startswith("http://127.0.0.1:")
