"""The ``labkit`` command: ``doctor`` and ``chat`` run in-process through ``labkit.cli.main`` (configured
from the environment, as in a terminal); ``practice`` runs as the installed ``labkit`` command, which
also proves the entry point works."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import IMAGES

from labkit.cli import main


def test_doctor_passes_on_a_backend_and_names_the_fix_without_one(
    fastchat_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABKIT_BASE_URL", fastchat_url)
    assert main(["doctor"]) == 0
    assert "✓ streaming request" in capsys.readouterr().out
    monkeypatch.setenv("LABKIT_BASE_URL", "http://127.0.0.1:9/v1")
    assert main(["doctor"]) == 1
    assert "Nothing is listening" in capsys.readouterr().out


def test_chat_prints_the_answer_and_its_timings(
    fastchat_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABKIT_BASE_URL", fastchat_url)
    assert main(["chat", "What colour?", "--image", str(IMAGES / "rocket.jpg")]) == 0
    out, err = capsys.readouterr()
    assert "blue" in out and "first token" in err


def test_the_installed_command_serves_practice_until_stopped() -> None:
    labkit_cmd = shutil.which("labkit", path=str(Path(sys.executable).parent))
    assert labkit_cmd, "the labkit command is not installed beside this Python"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([labkit_cmd, "practice", "--port", str(port), "--fast", "--dialect", "vllm"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
