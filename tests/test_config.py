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
    env = {"PATH": "/usr/bin:/bin", "LABKIT_PRACTICE_FAST": "1", "LABKIT_LANG": "en", "LABKIT_PRACTICE_SHARED": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("built-in practice server") == 1
    assert "LABKIT_BASE_URL=" in out.stderr
    assert "URL http://127.0.0.1:" in out.stdout and "TEXT This is a simulated" in out.stdout


def test_import_starts_nothing() -> None:
    code = "import threading, labkit, labkit.practice; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1" and out.stderr == ""


@pytest.mark.parametrize("key,shown", [
    ("abcdefghi", "*** (9 chars)"),
    ("dummy_key", "*** (9 chars)"),
    ("sk-course-1234567890", "…7890 (20 chars)"),
])
def test_mask_key_shows_at_most_four_characters_and_none_of_a_short_key(key: str, shown: str) -> None:
    assert labkit.mask_key(key) == shown
    assert sum(c in key for c in shown.split(" (")[0].strip("*…")) <= 4


def test_configure_none_returns_one_field_to_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    labkit.configure(base_url="http://127.0.0.1:8000/v1", model="served", timeout=5)
    labkit.configure(base_url=None)  # only base_url goes back
    s = load_settings()
    assert (s.base_url, s.model, s.timeout) == (None, "served", 5.0)
    assert s.sources["base_url"] == "not set: embedded practice server"
    monkeypatch.setenv("LABKIT_MODEL", "from-env")
    labkit.configure(model=None)
    assert load_settings().model == "from-env"  # the environment applies again
    labkit.configure(timeout=None)
    assert load_settings().timeout == 120


def test_the_key_is_a_secret_that_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_API_KEY", "sk-course-secret-0123456789")
    key = load_settings().api_key
    assert isinstance(key, labkit.Secret) and key == "sk-course-secret-0123456789"
    for shown in (repr(key), str(key), f"{key}", f"{key!r}", f"{key:>40}", repr(load_settings())):
        assert "secret" not in shown and "0123456789" not in shown
    assert key.reveal() == "sk-course-secret-0123456789"


def test_a_verbose_traceback_never_shows_the_key() -> None:
    """What a student sees after `%xmode Verbose`: every frame's locals and the attributes on each line."""
    from IPython.core.ultratb import VerboseTB

    from labkit.practice import serve_in_thread

    secret = "sk-course-secret-0123456789"
    with serve_in_thread(fast=True, api_keys=("the-course-key",)) as base:
        labkit.configure(base_url=base, api_key=secret)
        try:
            labkit.chat("Hi", display=False)
        except labkit.AuthError:
            text = VerboseTB().text(*sys.exc_info())
        else:
            pytest.fail("the wrong key was accepted")
    assert "self.settings.api_key" in text and "Secret('…6789 (27 chars)')" in text  # the line was shown
    assert secret not in text and "0123456789" not in text


def test_a_failed_embedded_start_is_backend_unreachable() -> None:
    code = ("import labkit\n"
            "try:\n"
            "    labkit.chat('Hi', display=False)\n"
            "except labkit.BackendUnreachable as e:\n"
            "    print('BackendUnreachable:', e)\n")
    env = {"PATH": "/usr/bin:/bin", "LABKIT_PRACTICE_DIALECT": "bogus", "LABKIT_LANG": "en"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "BackendUnreachable: No backend is configured and the built-in practice server could not start" in out.stdout
    assert "LABKIT_PRACTICE_DIALECT='bogus'" in out.stdout and "LABKIT_BASE_URL" in out.stdout


def test_debug_logs_never_show_the_key(caplog: pytest.LogCaptureFixture) -> None:
    """openai's and httpx's DEBUG logging (what OPENAI_LOG=debug turns on), for an answer and a refusal."""
    from labkit.practice import serve_in_thread

    secret = "sk-course-secret-0123456789"
    caplog.set_level("DEBUG")
    with serve_in_thread(fast=True, api_keys=(secret,)) as base:
        labkit.configure(base_url=base, api_key=secret)
        assert labkit.chat("Hi", display=False, max_tokens=3).text
        labkit.configure(api_key="wrong-9876543210")
        with pytest.raises(labkit.AuthError):
            labkit.chat("Hi", display=False)
    logged = caplog.text
    assert "HTTP Request: POST" in logged or "Request options" in logged  # the debug log was on
    assert "0123456789" not in logged and "9876543210" not in logged


def test_a_killed_shared_practice_server_is_started_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import os, signal, time, psutil, labkit\n"
        "from labkit import backend\n"
        "from urllib.parse import urlsplit\n"
        "print('FIRST', labkit.chat('Hi', display=False, max_tokens=5).text)\n"
        "port = urlsplit(backend._embedded_url).port\n"
        "pid = next(c.pid for c in psutil.net_connections('tcp') if c.laddr.port == port and c.status == 'LISTEN')\n"
        "assert pid != os.getpid()  # the shared server is a process of its own\n"
        "os.kill(pid, signal.SIGKILL)\n"
        "import socket\n"
        "for _ in range(200):  # until the port refuses connections: the server is gone\n"
        "    try: socket.create_connection(('127.0.0.1', port), timeout=1).close(); time.sleep(0.05)\n"
        "    except OSError: break\n"
        "print('SECOND', labkit.chat('Hi', display=False, max_tokens=5).text)\n"
        "port = urlsplit(backend._embedded_url).port\n"
        "pid = next(c.pid for c in psutil.net_connections('tcp') if c.laddr.port == port and c.status == 'LISTEN')\n"
        "os.kill(pid, signal.SIGTERM)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path), "LABKIT_LANG": "en",
           "LABKIT_PRACTICE_FAST": "1", "LABKIT_PRACTICE_SHARED": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "FIRST This is a simulated" in out.stdout and "SECOND This is a simulated" in out.stdout
    assert out.stderr.count("had stopped, so labkit started it again") == 1, out.stderr
