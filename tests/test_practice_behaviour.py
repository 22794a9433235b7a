"""The practice server's validation, answers, quirks and faults, over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from support import IMAGES, png_data_url

from labkit.practice import FaultConfig, PracticeConfig, serve_in_thread

MODEL = "llava-v1.6-34b"
HERE = Path(__file__).resolve().parent


def body(content: object = "Hello", **extra: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": True, **extra}


def image_content(url: str, text: str = "Describe the image to me") -> list[dict]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]


def post(base: str, payload: object, headers: dict[str, str] | None = None) -> httpx.Response:
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return httpx.post(f"{base}/chat/completions", content=data, timeout=10,
                      headers={"content-type": "application/json", **(headers or {})})


def answer(base: str, payload: dict) -> str:
    r = post(base, payload)
    assert r.status_code == 200, r.text
    out = ""
    for line in r.text.split("\n\n"):
        if line.startswith("data: {"):
            choices = json.loads(line[6:]).get("choices") or [{}]
            out += choices[0].get("delta", {}).get("content") or ""
    return out


# --- the course document's sample code -----------------------------------------------------------

def test_course_sample_code_describes_the_image(fastchat_url: str, tmp_path: Path) -> None:
    photo = tmp_path / "red.jpg"
    Image.new("RGB", (1008, 756), (210, 25, 30)).save(photo, quality=95)
    root = fastchat_url.rsplit("/v1", 1)[0]
    out = subprocess.run([sys.executable, str(HERE / "fixtures" / "course_sample.py"), str(photo), f"{root}/api/v1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1008×756" in out.stdout and "red" in out.stdout
    assert not out.stdout.startswith("assistant")


# --- validation: each failure in the dialect's shape, never a 500 --------------------------------

FASTCHAT_CASES = [
    (body(model="gpt-4o"), 400, 40301, "Only llava-v1.6-34b allowed now, your model gpt-4o"),
    (body(max_tokens=0), 400, 40302, "0 is less than the minimum of 1 - 'max_tokens'"),
    (body(temperature=3.0), 400, 40302, "3.0 is greater than the maximum of 2 - 'temperature'"),
    (body(top_p=1.5), 400, 40302, "greater than the maximum of 1 - 'top_p'"),
    (body(max_tokens="lots"), 400, 40001, "'max_tokens' must be an integer"),
    ({"model": MODEL, "stream": True}, 400, 40001, "no 'messages'"),
    ({"model": MODEL, "messages": [{"role": "bot", "content": "hi"}], "stream": True}, 400, 40001, "role is 'bot'"),
    ({"model": MODEL, "messages": {}, "stream": True}, 400, 40001, "non-empty list"),
    (body(top_k=0), 400, 40302, "0 is out of Range. Either set top_k to -1 or >=1."),
    (body(n=0), 400, 40302, "0 is less than the minimum of 1 - 'n'"),
    (body(stop={"a": 1}), 400, 40001, "'stop' must be a string or a list of strings"),
    (body(stream="maybe"), 400, 40001, "'stream' must be true or false"),
    (body([{"type": "image_url", "image_url": "data:image/png;base64,x"}]), 400, 40001, "not a string"),
    (body("x " * 5000), 400, 40303, "maximum context length is 4096"),
    (body(stream=False), 400, 40001, "pass stream=True"),
]


# Behind FastChat's front, images reach the worker only once the stream began: a bad or extra image is a
# 200 stream with the worker's error event (error_code 50001), as on the real front (tests/fastchat).
FASTCHAT_STREAM_ERRORS = [
    (body(image_content("https://example.com/cat.jpg")), "send the image itself as a base64 data URL"),
    (body(image_content("data:image/png;base64,bm90IGFuIGltYWdl")), "not an image Pillow can open"),
    (body(image_content("data:image/png;base64,@@@")), "not valid base64"),
    (body(image_content("data:image/svg+xml;base64," + base64.b64encode(b"<svg xmlns='x'></svg>").decode())), "SVG"),
    (body([{"type": "text", "text": "two"}, {"type": "image_url", "image_url": {"url": png_data_url(8, 8)}},
           {"type": "image_url", "image_url": {"url": png_data_url(8, 8)}}]), "At most 1 image(s)"),
]


@pytest.mark.parametrize("payload,message", FASTCHAT_STREAM_ERRORS)
def test_fastchat_bad_images_are_a_mid_stream_error(fastchat_url: str, payload: dict, message: str) -> None:
    r = post(fastchat_url, payload)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [e[6:] for e in r.text.split("\n\n") if e]
    assert json.loads(events[0])["choices"][0]["delta"] == {"role": "assistant"}
    error = json.loads(events[1])
    assert list(error) == ["text", "error_code"] and error["error_code"] == 50001
    assert error["text"].startswith("**NETWORK ERROR DUE TO HIGH TRAFFIC.") and message in error["text"]
    assert events[2:] == ["[DONE]"]


def test_fastchat_ignores_parts_it_does_not_read(fastchat_url: str) -> None:
    r = post(fastchat_url, body([{"type": "audio", "audio": "x"}, {"type": "text", "text": "Hello"}]))
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("payload,status,code,message", FASTCHAT_CASES)
def test_fastchat_validation(fastchat_url: str, payload: dict, status: int, code: int, message: str) -> None:
    r = post(fastchat_url, payload)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    got = r.json()
    assert list(got) == ["object", "message", "code"] and got["object"] == "error"
    assert got["code"] == code
    assert message in got["message"]


@pytest.mark.parametrize("payload,status,param,message", [
    (body(model="gpt-4o"), 404, "model", "The model `gpt-4o` does not exist"),
    (body(max_tokens=-1), 400, "max_tokens", "max_tokens must be at least 1, got -1. (parameter=max_tokens, value=-1)"),
    (body(image_content("data:image/png;base64,bm90IGFuIGltYWdl")), 400, "image", "not an image"),
    (body(stream=False), 400, "stream", "pass stream=True"),
    ({"model": MODEL, "messages": [], "stream": True}, 400, None, "Cannot apply chat template to an empty"),
    (body(n=2, temperature=0), 400, "n", "n must be 1 when using greedy sampling, got 2."),
])
def test_vllm_validation(vllm_url: str, payload: dict, status: int, param: str | None, message: str) -> None:
    r = post(vllm_url, payload)
    assert r.status_code == status
    err = r.json()["error"]
    assert list(err) == ["message", "type", "param", "code"]
    assert err["code"] == status and err["param"] == param and message in err["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", "\ufeff{".encode()])
def test_malformed_bodies_get_400(any_url: str, raw: bytes) -> None:
    r = post(any_url, raw)
    assert r.status_code == 400


def test_body_size_limit() -> None:
    with serve_in_thread(fast=True, max_body_bytes=1000) as base:
        r = post(base, body("x" * 2000))
        assert r.status_code == 413
        assert "over the" in r.json()["message"] and "labkit.encode_image" in r.json()["message"]


def test_no_body_size_is_refused_by_default(fastchat_url: str) -> None:
    """No real server limits the body (the course document's sample with a 12 MP photo is 33 MB): a 25 MB
    body is read and judged on what it says (here: far over the context)."""
    r = post(fastchat_url, body("word " * 5_000_000))
    assert r.status_code == 400 and r.json()["code"] == 40303


def test_non_stream_allowed_when_switched_on() -> None:
    with serve_in_thread(fast=True, allow_non_stream=True) as base:
        client = openai.OpenAI(base_url=base, api_key="k")
        done = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
        assert done.choices[0].finish_reason == "length" and done.usage is not None
        assert done.usage.completion_tokens == 4


def test_api_keys_enforced_in_each_dialect() -> None:
    for dialect, shape in (("fastchat", {"detail"}), ("vllm", {"error"})):
        with serve_in_thread(fast=True, dialect=dialect, api_keys=("right-key",)) as base:
            wrong = post(base, body(), headers={"authorization": "Bearer wrong"})
            assert wrong.status_code == 401 and set(wrong.json()) == shape
            assert post(base, body()).status_code == 401
            assert post(base, body(), headers={"authorization": "Bearer right-key"}).status_code == 200


# --- the "model": answers computed from what was sent -----------------------------------------------

def test_answer_reports_size_and_colour(any_url: str) -> None:
    text = answer(any_url, body(image_content(png_data_url(1008, 756, (200, 20, 20)))))
    assert "1008×756" in text and "landscape" in text
    assert "red" in text
    blue = answer(any_url, body(image_content(png_data_url(300, 600, (20, 40, 220)), "What colour is it?")))
    assert "blue" in blue and "portrait" in blue
    assert blue.index("blue") < blue.index("300×600"), "a colour question is answered colour first"


def test_answer_reads_a_real_photo(fastchat_url: str) -> None:
    data = (IMAGES / "rocket.jpg").read_bytes()
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    text = answer(fastchat_url, body(image_content(url)))
    assert "640×427" in text and "blue" in text and "photograph" in text


def test_exif_orientation_is_applied_by_the_server(fastchat_url: str) -> None:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new("RGB", (400, 200), "green").save(buf, format="JPEG", exif=exif)
    url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    assert "200×400" in answer(fastchat_url, body(image_content(url)))


def test_chinese_question_gets_chinese_answer(fastchat_url: str) -> None:
    # temperature 0: the greedy wording ("主要颜色是…"); a sampled one may say "画面以绿色为主" without "颜色"
    text = answer(fastchat_url, body(image_content(png_data_url(64, 64, (20, 160, 40)), "图片里是什么颜色？"),
                                     temperature=0))
    assert "绿色" in text and "颜色" in text


def test_same_greedy_request_same_answer_and_max_tokens(vllm_url: str) -> None:
    payload = body(image_content(png_data_url(320, 240, "yellow")), stream_options={"include_usage": True},
                   temperature=0)
    assert answer(vllm_url, payload) == answer(vllm_url, payload)
    r = post(vllm_url, {**payload, "max_tokens": 7})
    chunks = [json.loads(x[6:]) for x in r.text.split("\n\n") if x.startswith("data: {")]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    tokens = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(tokens) == 7


def test_requested_length_is_honoured(fastchat_url: str) -> None:
    text = answer(fastchat_url, body(image_content(png_data_url(64, 64), "Describe it in about 200 words")))
    assert 190 <= len(text.split()) <= 215


def test_leak_can_be_switched_off() -> None:
    with serve_in_thread(fast=True, leak_role_prefix=False) as base:
        assert not answer(base, body()).startswith("assistant")


def test_pacing_is_realistic_by_default() -> None:
    with serve_in_thread(PracticeConfig(ttft=0.3, tokens_per_second=50)) as base:
        started = time.perf_counter()
        text = answer(base, body(max_tokens=10))
        elapsed = time.perf_counter() - started
    assert text and 0.3 + 9 / 50 <= elapsed < 5


# --- faults --------------------------------------------------------------------------------------

def test_drop_after_cuts_the_connection(fastchat_url: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{fastchat_url}/chat/completions", json=body(),
                          headers={"x-practice-fault": "drop-after=2"}) as r:
            for _ in r.iter_bytes():
                pass


def test_error_event_in_each_dialect(fastchat_url: str, vllm_url: str) -> None:
    r = post(fastchat_url, body(), headers={"x-practice-fault": "error-after=1"})
    events = [e for e in r.text.split("\n\n") if e]
    assert r.status_code == 200 and events[-1] == "data: [DONE]"
    assert list(json.loads(events[-2][6:])) == ["text", "error_code"]
    r = post(vllm_url, body(), headers={"x-practice-fault": "error-after=1"})
    events = [e for e in r.text.split("\n\n") if e]
    assert list(json.loads(events[-2][6:])["error"]) == ["message", "type", "param", "code"]


def test_stall_keeps_the_connection_silent(fastchat_url: str) -> None:
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("POST", f"{fastchat_url}/chat/completions", json=body(), timeout=httpx.Timeout(5, read=0.5),
                          headers={"x-practice-fault": "stall-after=1,stall-seconds=5"}) as r:
            for _ in r.iter_bytes():
                pass


@pytest.mark.parametrize("status", [429, 503])
def test_fail_before_streaming_then_recover(status: int) -> None:
    with serve_in_thread(fast=True, faults=FaultConfig(fail_status=status, times=1)) as base:
        assert post(base, body()).status_code == status
        assert post(base, body()).status_code == 200


def test_rate_limit_is_per_key_when_keys_are_enforced() -> None:
    with serve_in_thread(fast=True, faults=FaultConfig(rate_limit=2), api_keys=("alice", "bob")) as base:
        alice = {"authorization": "Bearer alice"}
        assert [post(base, body(), headers=alice).status_code for _ in range(3)] == [200, 200, 429]
        assert post(base, body(), headers={"authorization": "Bearer bob"}).status_code == 200
        assert int(post(base, body(), headers=alice).headers["retry-after"]) > 0


def test_rate_limit_without_keys_is_per_client_so_rotating_keys_does_not_help() -> None:
    with serve_in_thread(fast=True, faults=FaultConfig(rate_limit=2)) as base:
        statuses = [post(base, body(), headers={"authorization": f"Bearer made-up-{i}"}).status_code
                    for i in range(3)]
        assert statuses == [200, 200, 429]
        r = post(base, body(), headers={"authorization": "Bearer yet-another"})
        assert r.status_code == 429 and "per client" in r.json()["message"]


def test_bad_fault_header_is_explained(fastchat_url: str) -> None:
    r = post(fastchat_url, body(), headers={"x-practice-fault": "explode=1"})
    assert r.status_code == 400 and "unknown fault 'explode'" in r.json()["message"]


@pytest.mark.parametrize("raw", [b'{"model": "llava-v1.6-34b", "messages": [], "max_tokens": 1' + b"0" * 5000 + b"}",
                                 b"[" * 100_000, b'{"model": "llava-v1.6-34b", "max_tokens": 1e400}'])
def test_absurd_bodies_are_400_not_500(any_url: str, raw: bytes) -> None:
    assert post(any_url, raw).status_code == 400


def test_absurd_numbers_are_refused_or_capped(fastchat_url: str, vllm_url: str) -> None:
    raw = json.dumps(body(max_tokens=10**400)).encode()
    assert post(vllm_url, raw).status_code == 400  # vLLM: over the context
    r = post(fastchat_url, raw)  # FastChat 0.2.36 caps max_tokens at what the context leaves
    assert r.status_code == 200 and '"finish_reason": "stop"' in r.text


def test_unknown_paths_answer_like_fastapi(fastchat_url: str) -> None:
    r = httpx.get(fastchat_url + "/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_fault_header_rejects_non_finite_values(fastchat_url: str) -> None:
    r = post(fastchat_url, body(), headers={"x-practice-fault": "stall-after=1,stall-seconds=nan"})
    assert r.status_code == 400 and "finite" in r.json()["message"]


def test_header_faults_hit_every_request_that_carries_them() -> None:
    with serve_in_thread(fast=True, faults=FaultConfig(fail_status=503, times=1)) as base:
        assert post(base, body()).status_code == 503
        for _ in range(2):  # re-running a notebook cell shows the fault again
            assert post(base, body(), headers={"x-practice-fault": "status=429"}).status_code == 429
        assert post(base, body()).status_code == 200
