"""The practice server's bytes against the real captures (ids, timestamps and text aside)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import openai
import pytest
from support import CAPTURES, png_data_url

MODEL = "llava-v1.6-34b"


def normalise(line: str) -> str:
    """Blank out what may differ (ids, timestamps, text, model name, counts); keep every other byte."""
    line = re.sub(r'"id": ?"chatcmpl-[A-Za-z0-9]+"', lambda m: m.group(0).split('"chatcmpl-')[0] + '"ID"', line)
    line = re.sub(r'("created": ?)\d+', r"\g<1>0", line)
    line = re.sub(r'("(?:content|text)": ?)"(?:[^"\\]|\\.)*"', r'\1"T"', line)
    line = re.sub(r'("model": ?)"[^"]*"', r'\1"M"', line)
    line = re.sub(r'("system_fingerprint": ?)"[^"]*"', r'\1"F"', line)
    line = re.sub(r'("(?:prompt|completion|total)_tokens": ?)\d+', r"\g<1>0", line)
    return line


def events(raw: str) -> list[str]:
    assert raw.endswith("\n\n"), "every event ends with a blank line"
    chunks = raw.split("\n\n")[:-1]
    assert all(c.startswith("data: ") for c in chunks), chunks
    return chunks


def capture_events(name: str) -> list[str]:
    text = (CAPTURES / name).read_text(encoding="utf-8")
    return [c for c in text.split("\n\n") if c.startswith("data: ")]


def fastchat_case(title: str) -> list[str]:
    text = (CAPTURES / "fastchat-0.2.36-cases.txt").read_text(encoding="utf-8")
    body = text.split(f"## {title}", 1)[1].split("\n", 1)[1].split("\n## ", 1)[0]
    return [c.strip("\n") for c in body.split("\n\n") if c.strip("\n").startswith("data: ")]


def stream_raw(base: str, body: dict, headers: dict | None = None) -> tuple[int, dict, str]:
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", f"{base}/chat/completions", json=body, headers=headers or {}) as r:
            raw = b"".join(r.iter_bytes()).decode("utf-8")
            return r.status_code, dict(r.headers), raw


def request(text: str = "Describe the image to me", image: bool = True, **extra: object) -> dict:
    content: list[dict] = [{"type": "text", "text": text}]
    if image:
        content.append({"type": "image_url", "image_url": {"url": png_data_url(500, 300)}})
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": True, **extra}


def test_fastchat_stream_matches_capture_byte_for_byte(fastchat_url: str) -> None:
    status, headers, raw = stream_raw(fastchat_url, request())
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    ours = [normalise(e) for e in events(raw)]
    real = [normalise(e) for e in capture_events("fastchat-0.2.36-image-stream.sse")]
    assert ours[0] == real[0]  # role chunk: no object/created
    assert set(ours[1:-2]) == {real[1]}  # every content chunk has the captured shape
    assert ours[-2] == real[-2]  # finish chunk with object/created and an empty delta
    assert ours[-1] == real[-1] == "data: [DONE]"
    assert '"content": "assistant\\n' in events(raw)[1], "the leaked role prefix comes with the first token"


def test_fastchat_length_and_usage_ignored(fastchat_url: str) -> None:
    _, _, raw = stream_raw(fastchat_url, request(max_tokens=3, stream_options={"include_usage": True}))
    ours = [normalise(e) for e in events(raw)]
    real = [normalise(e) for e in fastchat_case("10. stream_options include_usage")]
    assert len(ours) == 1 + 3 + 1 + 1, "role, three tokens, finish, DONE: no usage chunk"
    assert ours == [real[0], real[1], real[1], real[1], real[-2], real[-1]]
    assert '"finish_reason": "length"' in ours[-2]


def test_fastchat_chinese_is_raw_utf8(fastchat_url: str) -> None:
    _, _, raw = stream_raw(fastchat_url, request("这张图片是什么颜色？"))
    assert "\\u" not in raw
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events(raw)[:-2])
    assert "红色" in text


def test_vllm_stream_matches_capture(vllm_url: str) -> None:
    status, headers, raw = stream_raw(vllm_url, request(max_tokens=16, stream_options={"include_usage": True}))
    assert status == 200 and headers["content-type"] == "text/event-stream; charset=utf-8"
    ours = [normalise(e) for e in events(raw)]
    real = [normalise(e) for e in capture_events("vllm-0.32-cpu-tiny-llava-next-stream.sse")]
    assert ours[0] == real[0]
    assert set(ours[1:-3]) == {real[1]}
    assert ours[-3] == real[-3]  # finish chunk: last token, finish_reason, stop_reason
    assert ours[-2] == real[-2]  # usage chunk: empty choices, system_fingerprint
    assert ours[-1] == real[-1] == "data: [DONE]"
    usage = json.loads(events(raw)[-2][6:])["usage"]
    assert usage["completion_tokens"] == 16 == len(ours) - 3


def test_vllm_stream_without_usage_matches_capture(vllm_url: str) -> None:
    _, _, raw = stream_raw(vllm_url, request(image=False, max_tokens=6))
    ours = [normalise(e) for e in events(raw)]
    real = [normalise(e) for e in capture_events("vllm-0.32-cpu-text-stream-no-usage.sse")]
    assert ours == real


def test_openai_client_reads_both_dialects(any_url: str) -> None:
    client = openai.OpenAI(base_url=any_url, api_key="dummy_key")
    stream = client.chat.completions.create(model=MODEL, messages=request()["messages"], stream=True,
                                            max_tokens=50, stream_options={"include_usage": True})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("assistant\n")
    assert "500×300" in text and "red" in text


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reads_the_stream(fastchat_url: str) -> None:
    out = subprocess.run(["curl", "-sN", f"{fastchat_url}/chat/completions", "-H", "Content-Type: application/json",
                          "-d", json.dumps(request(max_tokens=5))], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0
    assert out.stdout.endswith("data: [DONE]\n\n")
    assert len(events(out.stdout)) == 1 + 5 + 2


def test_models_and_health(fastchat_url: str, vllm_url: str) -> None:
    with httpx.Client() as http:
        card = http.get(f"{fastchat_url}/models").json()["data"][0]
        assert card["id"] == MODEL and card["owned_by"] == "fastchat" and "max_model_len" not in card
        card = http.get(f"{vllm_url}/models").json()["data"][0]
        assert card["owned_by"] == "vllm" and card["max_model_len"] == 4096
        root = fastchat_url.rsplit("/v1", 1)[0]
        assert http.get(f"{root}/api/v1/models").status_code == 200, "the course's /api/v1 prefix is served"
        health = http.get(f"{root}/health")
        assert health.status_code == 200 and health.content == b""


def test_models_list_keys_match_capture(fastchat_url: str) -> None:
    real = json.loads((CAPTURES / "fastchat-0.2.36-cases.txt").read_text().split("## 11. GET /v1/models\n")[1]
                      .split("\n")[0])
    ours = httpx.get(f"{fastchat_url}/models").json()
    assert list(ours) == list(real)
    assert list(ours["data"][0]) == list(real["data"][0])
    assert list(ours["data"][0]["permission"][0]) == list(real["data"][0]["permission"][0])
