"""The ``labkit`` command: ``doctor`` and ``chat`` run in-process through ``labkit.cli.main`` (configured
from the environment, as in a terminal); ``practice`` runs as the installed ``labkit`` command, which
also proves the entry point works."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import IMAGES, processes_showing

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


def _practice(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    labkit_cmd = shutil.which("labkit", path=str(Path(sys.executable).parent))
    assert labkit_cmd, "the labkit command is not installed beside this Python"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    full_env["LABKIT_LANG"] = "en"  # the assertions read English (Chinese is the default)
    proc = subprocess.Popen([labkit_cmd, "practice", "--port", str(port), "--fast", *args], env={**full_env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("labkit practice did not start: " + proc.communicate()[1])


def test_practice_takes_keys_from_a_file_and_the_environment_never_a_command_line(tmp_path: Path) -> None:
    keys = {name: f"sk-{name}-{os.urandom(6).hex()}" for name in ("ada", "bo", "ta")}
    key_file = tmp_path / "keys.csv"
    key_file.write_text(f"# the class\nada,{keys['ada']}\n{keys['bo']}\n")  # a hub's keys file works as it is
    key_file.chmod(0o600)
    proc, port = _practice(["--api-key-file", str(key_file)], {"LABKIT_PRACTICE_API_KEYS": keys["ta"]})
    try:
        for key in keys.values():
            assert processes_showing(key) == []
            models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert models.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models",
                         headers={"Authorization": "Bearer sk-someone-else"}).status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert "Warning" not in err and not any(key in out + err for key in keys.values())


def test_practice_warns_about_a_key_on_its_command_line_and_a_readable_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("sk-file-key\n")
    key_file.chmod(0o644)
    proc, port = _practice(["--api-key", "sk-visible", "--api-key-file", str(key_file)], {})
    try:
        for key in ("sk-visible", "sk-file-key"):
            assert httpx.get(f"http://127.0.0.1:{port}/v1/models",
                             headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Warning: an API key was given on the command line of labkit practice" in err
    assert "--api-key-file" in err and f"chmod 600 {key_file}" in err
    assert "sk-visible" not in err and "sk-file-key" not in err


def test_practice_names_a_missing_or_empty_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n\n")
    assert main(["practice", "--api-key-file", str(tmp_path / "missing.txt")]) == 2
    assert f"Cannot read the API key file {tmp_path / 'missing.txt'}" in capsys.readouterr().err
    assert main(["practice", "--api-key-file", str(empty)]) == 2
    assert f"The API key file {empty} holds no key" in capsys.readouterr().err
