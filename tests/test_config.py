"""Configuration from the environment, the embedded default, and key hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

import labkit
from labkit.config import load_settings


def test_defaults_with_nothing_set() -> None:
    s = load_settings()
    assert s.base_url is None and s.api_key is None
    assert s.model == "llava-v1.6-34b" and s.timeout == 120


def test_labkit_variables_win_over_openai_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://hub-default:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai-var")
    assert load_settings().base_url == "http://hub-default:8000/v1"
    assert load_settings().api_key == "from-openai-var"
    monkeypatch.setenv("LABKIT_BASE_URL", "http://lab:8008/api/v1/")
    monkeypatch.setenv("LABKIT_API_KEY", "from-labkit-var")
    monkeypatch.setenv("LABKIT_MODEL", "llava-v1.6-mistral-7b")
    monkeypatch.setenv("LABKIT_TIMEOUT", "30")
    s = load_settings()
    assert (s.base_url, s.api_key, s.model, s.timeout) == ("http://lab:8008/api/v1", "from-labkit-var",
                                                           "llava-v1.6-mistral-7b", 30.0)
    assert s.sources["base_url"] == "LABKIT_BASE_URL"


def test_an_openai_key_is_not_sent_to_a_labkit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "real-openai-secret")
    monkeypatch.setenv("LABKIT_BASE_URL", "http://lab:8008/api/v1")
    assert load_settings().api_key is None
    monkeypatch.setenv("LABKIT_API_KEY", "course-key")
    assert load_settings().api_key == "course-key"


def test_configure_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_BASE_URL", "http://lab:8008/api/v1")
    labkit.configure(base_url="http://127.0.0.1:8000/v1", model="served")
    assert load_settings().base_url == "http://127.0.0.1:8000/v1"
    labkit.reset_configuration()
    assert load_settings().base_url == "http://lab:8008/api/v1"


@pytest.mark.parametrize("name,value,needle", [
    ("LABKIT_BASE_URL", "lab:8008/api/v1", "is not an http(s) URL"),
    ("LABKIT_BASE_URL", "http://lab:8008/api/v1/chat/completions", "drop '/chat/completions'"),
    ("LABKIT_TIMEOUT", "soon", "LABKIT_TIMEOUT='soon' is not a positive number"),
    ("LABKIT_TIMEOUT", "-5", "is not a positive number"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(labkit.ConfigError, match=name) as info:
        load_settings()
    assert needle in str(info.value)


def test_key_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "course-secret-key-0123456789"
    monkeypatch.setenv("LABKIT_API_KEY", secret)
    s = load_settings()
    assert secret not in repr(s) and secret not in str(s)
    assert labkit.mask_key(secret).endswith("(28 chars)")


def test_client_without_backend_starts_embedded_server_once() -> None:
    code = (
        "import labkit\n"
        "a = labkit.client(); b = labkit.client()\n"
        "assert str(a.base_url) == str(b.base_url)\n"
        "print('URL', a.base_url)\n"
        "r = labkit.chat('Hi', display=False, max_tokens=5)\n"
        "print('TEXT', r.text)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "LABKIT_PRACTICE_FAST": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("built-in practice server") == 1
    assert "LABKIT_BASE_URL=" in out.stderr
    assert "URL http://127.0.0.1:" in out.stdout and "TEXT This is a simulated" in out.stdout


def test_import_starts_nothing() -> None:
    code = "import threading, labkit, labkit.practice; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1" and out.stderr == ""
