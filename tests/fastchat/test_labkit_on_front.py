"""labkit's helpers against FastChat 0.2.36's own front end (controller + openai_api_server) and our
vllm_worker-style model worker: what a student runs, the way they run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support import IMAGES, ROOT

import labkit
from labkit.batch import BatchItem, load_results, run_batch

MODEL = "llava-v1.6-34b"

SIZE = re.compile(r"(\d+)×(\d+)")


def _aspect_matches(text: str, photo: Path) -> bool:
    """Whether ``text`` names a W×H with the photo's aspect ratio (the size the worker decoded)."""
    with Image.open(photo) as img:
        ratio = img.width / img.height
    return any(abs(int(w) / int(h) - ratio) < 0.02 for w, h in SIZE.findall(text))


# ---------------------------------------------------------------- the stack itself


def test_worker_registered_with_the_controller_and_sends_heartbeats(controller_url: str, logs: Path) -> None:
    models = httpx.post(controller_url + "/list_models", timeout=10, trust_env=False).json()["models"]
    assert models == [MODEL]
    address = httpx.post(controller_url + "/get_worker_address", json={"model": MODEL}, timeout=10,
                         trust_env=False).json()["address"]
    assert address.startswith("http://127.0.0.1:")
    log = logs / "controller.out"
    deadline = time.monotonic() + 15  # the script sets a 3-second heartbeat interval
    while f"Receive heart beat. {address}" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no heartbeat from {address} in {log}"
        time.sleep(0.5)
    assert f"Register a new worker: {address}" in log.read_text(errors="replace")


def test_the_worker_gets_vicuna_prompts_and_data_urls(controller_url: str) -> None:
    """What FastChat passes to a worker: the vicuna_v1.1 template (0.2.36's LlavaAdapter choice)."""
    address = httpx.post(controller_url + "/get_worker_address", json={"model": MODEL}, timeout=10,
                         trust_env=False).json()["address"]
    conv = httpx.post(address + "/worker_get_conv_template", json={"model": MODEL}, timeout=10,
                      trust_env=False).json()["conv"]
    assert conv["name"] == "vicuna_v1.1" and conv["roles"] == ["USER", "ASSISTANT"] and conv["sep2"] == "</s>"
    assert httpx.post(address + "/model_details", json={"model": MODEL}, timeout=10,
                      trust_env=False).json() == {"context_length": 4096}


# ---------------------------------------------------------------- the course document's sample


def test_course_document_sample_runs_unchanged(front_url: str) -> None:
    """tests/fixtures/course_sample.py is the course document's sample, verbatim but for the image
    path and base_url; it strips the leaked prefix itself."""
    photo = IMAGES / "coffee.jpg"
    program = ROOT / "tests" / "fixtures" / "course_sample.py"
    done = subprocess.run([sys.executable, str(program), str(photo), front_url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.strip()
    assert out and not out.startswith("assistant"), out[:200]
    with Image.open(photo) as img:  # the sample sends the photo at full size, as PNG
        assert f"{img.width}×{img.height}" in out, out[:300]


# ---------------------------------------------------------------- labkit doctor


def test_labkit_doctor_passes_and_says_where_it_looked(env_on_front: dict[str, str], front_url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "labkit", "doctor"], capture_output=True, text=True, timeout=120,
                          env=env_on_front, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert front_url in out and "✓" in out and "✗" not in out, out
    assert "dummy_key" not in out  # the key never appears in output
    assert "Traceback" not in out


# ---------------------------------------------------------------- labkit.chat


def test_chat_with_an_image(on_front: str) -> None:
    photo = IMAGES / "coffee.jpg"
    reply = labkit.chat("What size is this image?", image=photo, display=False)
    assert reply.raw.startswith("assistant\n")  # what FastChat passed on from the worker
    assert reply.text and not reply.text.startswith("assistant")  # what the student sees
    assert reply.finish_reason == "stop" and reply.model == MODEL
    assert reply.usage is None  # FastChat sends no usage in a stream
    assert reply.chunks > 3 and reply.ttft is not None
    assert _aspect_matches(reply.text, photo), reply.text


def test_chat_in_chinese_is_raw_utf8_and_cleaned(on_front: str) -> None:
    reply = labkit.chat("这张图片是什么颜色？", image=IMAGES / "rocket.jpg", display=False)
    assert reply.raw.startswith("assistant\n") and not reply.text.startswith("assistant")
    assert re.search(r"[\u4e00-\u9fff]", reply.text), reply.text
    assert reply.finish_reason == "stop"


def test_max_tokens_gives_length(on_front: str) -> None:
    reply = labkit.chat("Describe the image to me", image=IMAGES / "chelsea.jpg", max_tokens=4, display=False)
    assert reply.finish_reason == "length"
    assert reply.chunks == 4 and reply.text and not reply.text.startswith("assistant")


def test_mid_stream_worker_error_is_a_stream_error_with_the_partial_text(on_front: str) -> None:
    with pytest.raises(labkit.StreamError) as info:
        labkit.chat("Describe the image to me [[worker-error:4]]", image=IMAGES / "rocket.jpg", display=False)
    err = info.value
    assert err.reason == "backend"
    assert err.partial_text and not err.partial_text.startswith("assistant")
    assert len(err.partial_text.split()) >= 3, err.partial_text
    message = str(err)
    assert "NETWORK ERROR DUE TO HIGH TRAFFIC" in message and "50002" in message, message


def test_wrong_model_is_model_not_found(on_front: str) -> None:
    with pytest.raises(labkit.ModelNotFound) as info:
        labkit.chat("Hello", model="gpt-4o", display=False)
    assert "gpt-4o" in str(info.value) and MODEL in str(info.value)


def test_out_of_range_temperature_is_rejected_with_the_backends_words(on_front: str) -> None:
    with pytest.raises(labkit.RequestRejected) as info:
        labkit.chat("Hello", temperature=3, display=False)
    assert "3.0 is greater than the maximum of 2 - 'temperature'" in str(info.value)


def test_too_long_prompt_is_fastchats_context_error(on_front: str) -> None:
    with pytest.raises(labkit.RequestRejected) as info:
        labkit.chat("x " * 5000, display=False)
    assert "maximum context length is 4096 tokens" in str(info.value)


# ---------------------------------------------------------------- Conversation


def test_multi_turn_conversation_carries_history_through_fastchats_template(on_front: str) -> None:
    photo = IMAGES / "chelsea.jpg"
    conv = labkit.Conversation()
    first = conv.ask("What size is this image?", photo, display=False)
    second = conv.ask("And what colour is it?", display=False)
    third = conv.ask("请用中文再说一遍。", display=False)
    for reply in (first, second, third):
        assert reply.text and not reply.text.startswith("assistant") and reply.finish_reason == "stop"
    assert _aspect_matches(first.text, photo), first.text
    # The image of turn 1 is still in the vicuna prompt FastChat built from the history.
    assert "no image" not in second.text and "没有图片" not in third.text, (second.text, third.text)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in third.text), third.text
    assert [m["role"] for m in conv.messages][-6:] == ["user", "assistant"] * 3
    assert not any(str(m.get("content", "")).startswith("assistant") for m in conv.messages if m["role"] == "assistant")


# ---------------------------------------------------------------- run_batch


def test_run_batch_with_resume(on_front: str, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    items = [BatchItem(p.name, "What size is this image?", p) for p in sorted(IMAGES.glob("*.jpg"))]
    items.append(BatchItem("broken", "Describe the image to me [[worker-error:2]]", IMAGES / "rocket.jpg"))
    first = run_batch(items[:2], out, progress=False, concurrency=2)
    assert (first.answered, first.failed) == (2, 0)
    out.write_bytes(out.read_bytes() + b'{"id": "cut-off", "sta')  # the kernel died mid-write
    second = run_batch(items, out, progress=False, concurrency=4)
    assert second.skipped == 2 and second.answered == len(items) - 3 and second.failed == 1
    records = load_results(out)
    for item in items[:-1]:
        record = records[item.id]
        assert record["status"] == "ok" and not record["answer"].startswith("assistant")
        assert _aspect_matches(record["answer"], Path(str(item.image))), record
    assert records["broken"]["status"] == "error" and records["broken"]["error_type"] == "StreamError"
    third = run_batch(items, out, progress=False, retry_failed=False)
    assert (third.skipped, third.answered, third.failed) == (len(items), 0, 0)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.endswith("}")]
    assert sum(1 for line in lines if line.get("id") == items[0].id) == 1


def test_labkit_doctor_on_a_front_that_refuses_the_key(front_with_keys: str, env_on_front: dict[str, str]) -> None:
    """FastChat started with --api-keys answers a wrong key with its 401: doctor fails, says so once,
    and never shows the key."""
    env = {**env_on_front, "LABKIT_BASE_URL": front_with_keys, "LABKIT_API_KEY": "wrong-key-123"}
    done = subprocess.run([sys.executable, "-m", "labkit", "doctor"], capture_output=True, text=True, timeout=120,
                          env=env, check=False)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "401" in out and "✗" in out, out
    assert "wrong-key-123" not in out and "Traceback" not in out, out
    assert out.count("refused the API key") == 1, f"the 401 sentence is printed more than once:\n{out}"


def test_chat_with_a_wrong_key_is_an_auth_error(front_with_keys: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_BASE_URL", front_with_keys)
    monkeypatch.setenv("LABKIT_API_KEY", "wrong-key-123")
    labkit.reset_configuration()
    with pytest.raises(labkit.AuthError) as info:
        labkit.chat("Hello", display=False)
    assert "401" in str(info.value) and "wrong-key-123" not in str(info.value)
    monkeypatch.setenv("LABKIT_API_KEY", "course-key")
    labkit.reset_configuration()
    reply = labkit.chat("Hello", max_tokens=3, display=False)
    assert reply.finish_reason == "length" and not reply.text.startswith("assistant")
