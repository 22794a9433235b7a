"""The practice server's FastChat dialect against FastChat 0.2.36's own openai_api_server, request by
request: the same body goes to both and the bytes that come back are compared event by event
(framing, key order, separators, raw UTF-8, error shapes and HTTP statuses). Only what is random on
both sides (ids, timestamps) is normalised. Where they differ, the practice server is wrong.

The answer *text* is the same "model" on both sides (labkit/practice/brain.py), greedy at temperature 0,
so even the content tokens must match.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from support import png_data_url

MODEL = "llava-v1.6-34b"
IMAGE = png_data_url(500, 300)
SERVER_ERROR = "**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE.**"


def _user(text: str, image: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image:
        parts.append({"type": "image_url", "image_url": {"url": image}})
    return {"role": "user", "content": parts}


def _body(*messages: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A streaming request; temperature 0 (greedy) so both sides give the same answer to it."""
    return {"model": MODEL, "messages": list(messages), "stream": True, "temperature": 0, **options}


def _normalise(raw: bytes) -> str:
    """What is random on both sides: the shortuuid ids, the timestamps."""
    text = raw.decode("utf-8")
    text = re.sub(r"chatcmpl-[23456789A-HJ-NP-Za-km-z]{22}\b", "chatcmpl-<id>", text)
    text = re.sub(r"modelperm-[23456789A-HJ-NP-Za-km-z]{22}\b", "modelperm-<id>", text)
    return re.sub(r'("created": ?)\d{10}\b', r"\g<1>0", text)  # 0 keeps it JSON


def _post(base: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(base + "/chat/completions", content=content, timeout=60, trust_env=False,
                      headers={"content-type": "application/json", **(headers or {})})


def _both(front: str, practice: str, body: Any, practice_headers: dict[str, str] | None = None
          ) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    a, b = _post(front, body), _post(practice, body, practice_headers)
    return ((a.status_code, a.headers.get("content-type", ""), _normalise(a.content)),
            (b.status_code, b.headers.get("content-type", ""), _normalise(b.content)))


def _events(text: str) -> list[str]:
    assert text.endswith("\n\n"), repr(text[-40:])
    return text[:-2].split("\n\n")


def _assert_same_stream(front: tuple[int, str, str], practice: tuple[int, str, str]) -> None:
    assert (practice[0], practice[1]) == (front[0], front[1])
    real, ours = _events(front[2]), _events(practice[2])
    for i, (a, b) in enumerate(zip(real, ours, strict=False)):  # lengths compared below
        assert b == a, f"event {i} differs:\n  front:    {a}\n  practice: {b}"
    assert len(ours) == len(real), f"front sent {len(real)} events, practice {len(ours)}"


# ---------------------------------------------------------------- streams that must match byte for byte

STREAMS = {
    "image, English": _body(_user("What size is this image?", IMAGE)),
    "image, Chinese": _body(_user("这张图片的尺寸是多少？", IMAGE)),
    "text only, Chinese": _body({"role": "user", "content": "你好，请介绍一下你自己。"}),
    "max_tokens cuts it (length)": _body(_user("What size is this image?", IMAGE), max_tokens=3),
    "max_tokens 1": _body(_user("What size is this image?", IMAGE), max_tokens=1),
    "system prompt": _body({"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hello"}),
    "three turns with an image in the first": _body(
        _user("What size is this image?", IMAGE), {"role": "assistant", "content": "It is 500×300 pixels."},
        {"role": "user", "content": "What size is it again?"}),
    "stream_options is ignored": _body({"role": "user", "content": "Hello"}, max_tokens=4,
                                       stream_options={"include_usage": True}),
    "sampling options": _body({"role": "user", "content": "Hello"}, temperature=0.0, top_p=0.5, max_tokens=5),
}


@pytest.mark.parametrize("body", list(STREAMS.values()), ids=list(STREAMS))
def test_stream_matches_the_real_front(front_url: str, practice_fastchat_url: str, body: dict[str, Any]) -> None:
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert front[0] == 200 and front[1] == "text/event-stream; charset=utf-8"
    assert '"content": "assistant\\n' in front[2]  # the leaked prefix, glued to the first token
    _assert_same_stream(front, practice)


def test_chinese_goes_as_raw_utf8_on_both(front_url: str, practice_fastchat_url: str) -> None:
    for base in (front_url, practice_fastchat_url):
        raw = _post(base, STREAMS["image, Chinese"]).content
        assert "像".encode() in raw and b"\\u" not in raw


@pytest.mark.parametrize("after", [0, 2], ids=["before the first token", "after two tokens"])
def test_mid_stream_worker_error_has_the_same_framing(front_url: str, practice_fastchat_url: str, after: int) -> None:
    """The front's error comes from our worker ([[worker-error:N]] in the prompt), the practice
    server's from its fault header; the cause in brackets is each side's own."""
    body = _body({"role": "user", "content": f"What size is this image? [[worker-error:{after}]]"})
    front, practice = _both(front_url, practice_fastchat_url, body, {"X-Practice-Fault": f"error-after={after}"})
    cause = re.compile(r'(\\n\\n)\([^)"]*\)(", "error_code")')
    front = (front[0], front[1], cause.sub(r"\1(<cause>)\2", front[2]))
    practice = (practice[0], practice[1], cause.sub(r"\1(<cause>)\2", practice[2]))
    events = _events(front[2])
    assert len(events) == 3 + after and events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:]) == {"text": SERVER_ERROR + "\n\n(<cause>)", "error_code": 50002}
    _assert_same_stream(front, practice)


# ---------------------------------------------------------------- errors that must match byte for byte

ERRORS = {
    "wrong model": _body({"role": "user", "content": "Hi"}, model="gpt-4o"),
    "max_tokens 0": _body({"role": "user", "content": "Hi"}, max_tokens=0),
    "max_tokens -1": _body({"role": "user", "content": "Hi"}, max_tokens=-1),
    "temperature 3": _body({"role": "user", "content": "Hi"}, temperature=3),
    "temperature -0.5": _body({"role": "user", "content": "Hi"}, temperature=-0.5),
    "top_p 1.5": _body({"role": "user", "content": "Hi"}, top_p=1.5),
    "n 0": _body({"role": "user", "content": "Hi"}, n=0),
    "wrong model beats bad parameters": _body({"role": "user", "content": "Hi"}, model="gpt-4o", temperature=3),
}


@pytest.mark.parametrize("body", list(ERRORS.values()), ids=list(ERRORS))
def test_error_matches_the_real_front(front_url: str, practice_fastchat_url: str, body: dict[str, Any]) -> None:
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert front[0] == 400 and front[1] == "application/json"
    assert practice == front


# FastChat's 40001 message is pydantic 1's repr of the validation errors; the practice server words its
# own (validation.py: "messages a student can act on"). Status, content type, shape and code must match.
VALIDATION = {
    "no messages": {"model": MODEL, "stream": True},
    "max_tokens not an integer": _body({"role": "user", "content": "Hi"}, max_tokens="abc"),
    "temperature not a number": _body({"role": "user", "content": "Hi"}, temperature="hot"),
    "not JSON": b"{not json",
}


@pytest.mark.parametrize("body", list(VALIDATION.values()), ids=list(VALIDATION))
def test_validation_error_has_the_real_fronts_shape(front_url: str, practice_fastchat_url: str, body: Any) -> None:
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert (practice[0], practice[1]) == (front[0], front[1]) == (400, "application/json")
    real, ours = json.loads(front[2]), json.loads(practice[2])
    assert list(ours) == list(real) == ["object", "message", "code"]
    assert (ours["object"], ours["code"]) == (real["object"], real["code"]) == ("error", 40001)
    assert ours["message"]


def test_models_listing_matches(front_url: str, practice_fastchat_url: str) -> None:
    real = httpx.get(front_url + "/models", timeout=10, trust_env=False)
    ours = httpx.get(practice_fastchat_url + "/models", timeout=10, trust_env=False)
    assert (ours.status_code, ours.headers["content-type"]) == (real.status_code, real.headers["content-type"])
    assert _normalise(ours.content) == _normalise(real.content)


@pytest.mark.parametrize("method,path", [("GET", "/nothing-here"), ("GET", "/chat/completions")])
def test_unknown_path_and_wrong_method_match(front_url: str, practice_fastchat_url: str, method: str,
                                             path: str) -> None:
    real = httpx.request(method, front_url + path, timeout=10, trust_env=False)
    ours = httpx.request(method, practice_fastchat_url + path, timeout=10, trust_env=False)
    assert (ours.status_code, ours.headers["content-type"], ours.content) == \
           (real.status_code, real.headers["content-type"], real.content)


def test_non_streaming_answer_matches_when_the_practice_server_allows_it(front_url: str) -> None:
    """The course backend refuses non-streaming calls (the practice server's default); FastChat's bare
    front answers them. With allow_non_stream the practice server must answer as FastChat does.
    ``usage.prompt_tokens`` is the worker's count (ours counts text, the practice server adds images)."""
    from labkit.practice import serve_in_thread

    body = {"model": MODEL, "messages": [_user("What size is this image?", IMAGE)], "max_tokens": 5, "temperature": 0}
    with serve_in_thread(fast=True, dialect="fastchat", allow_non_stream=True) as practice:
        front, ours = _both(front_url, practice, body)
    assert front[0] == 200 and front[1] == "application/json"
    assert (ours[0], ours[1]) == (front[0], front[1])
    strip = re.compile(r'"prompt_tokens":\d+,"total_tokens":\d+')
    assert strip.sub("", ours[2]) == strip.sub("", front[2])
    assert json.loads(front[2])["choices"][0]["message"]["content"].startswith("assistant\n")


def test_documented_deviations_hold(front_url: str, practice_fastchat_url: str) -> None:
    """Two deliberate differences (shared/captures/README.md, shared/protocol.md): an unknown role is
    FastChat's plain-text 500 but the practice server's 400 naming the role; a non-streaming call is
    answered by bare FastChat but refused by the course backend, as by the practice server."""
    front, practice = _both(front_url, practice_fastchat_url, _body({"role": "robot", "content": "Hi"}))
    assert front == (500, "text/plain; charset=utf-8", "Internal Server Error")
    assert practice[0] == 400 and json.loads(practice[2])["code"] == 40001 and "'robot'" in practice[2]
    front, practice = _both(front_url, practice_fastchat_url, _body({"role": "user", "content": "Hi"}, stream=False))
    assert front[0] == 200 and practice[0] == 400 and "stream=True" in practice[2]


# ---------------------------------------------------------------- API keys: a real front with --api-keys


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["no key", "wrong key"])
def test_refused_key_matches(front_with_keys: str, key: str | None) -> None:
    from labkit.practice import serve_in_thread

    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = _body({"role": "user", "content": "Hi"})
    with serve_in_thread(fast=True, dialect="fastchat", api_keys=("course-key",)) as practice:
        answers = [_post(base, body, headers) for base in (front_with_keys, practice)]
        answers += [httpx.get(base + "/models", headers=headers, timeout=10, trust_env=False)
                    for base in (front_with_keys, practice)]
    for real, ours in (answers[:2], answers[2:]):
        assert real.status_code == 401
        assert (ours.status_code, ours.headers["content-type"], ours.content) == \
               (real.status_code, real.headers["content-type"], real.content)
    ok = _post(front_with_keys, {**body, "max_tokens": 2}, {"authorization": "Bearer course-key"})
    assert ok.status_code == 200 and ok.content.endswith(b"data: [DONE]\n\n")


# ---------------------------------------------------------------- the context length, as FastChat checks it
# FastChat's check_length: the worker's count of the prompt *text* (an image is a placeholder) against the
# context; max_tokens is capped at what is left, never refused.


def test_max_tokens_over_the_context_is_capped_not_refused(front_url: str, practice_fastchat_url: str) -> None:
    body = _body({"role": "user", "content": "y " * 3000}, max_tokens=2000)
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert front[0] == 200
    _assert_same_stream(front, practice)


def test_image_tokens_pass_fastchats_length_check_and_fill_the_engine(front_url: str,
                                                                       practice_fastchat_url: str) -> None:
    """~2,000 text tokens + a 672×672 image (2,928 tokens): FastChat's check passes (text only), the
    engine has no room left, and the answer is empty with finish_reason "length" (no 40303)."""
    body = _body(_user("y " * 2000, png_data_url(672, 672)))
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert front[0] == 200 and '"content"' not in front[2] and '"finish_reason": "length"' in front[2]
    _assert_same_stream(front, practice)


def test_context_overflow_message(front_url: str, practice_fastchat_url: str) -> None:
    front, practice = _both(front_url, practice_fastchat_url, _body({"role": "user", "content": "x " * 5000}))
    assert front[0] == 400 and json.loads(front[2])["code"] == 40303
    # The count is each side's stand-in for the model's tokenizer (our worker counts the whole vicuna prompt).
    count = re.compile(r"resulted in \d+ tokens")
    assert (practice[0], practice[1], count.sub("", practice[2])) == (front[0], front[1], count.sub("", front[2]))


# ---------------------------------------------------------------- sampling options FastChat checks or passes on


@pytest.mark.parametrize("top_k", [0, -5, 1], ids=["0 is out of range", "-5 passes", "1 passes"])
def test_top_k_is_checked_as_fastchat_does(front_url: str, practice_fastchat_url: str, top_k: int) -> None:
    body = _body({"role": "user", "content": "Hi"}, top_k=top_k, max_tokens=3)
    front, practice = _both(front_url, practice_fastchat_url, body)
    if top_k == 0:
        assert front[0] == 400 and "top_k to -1 or >=1" in front[2]
        assert practice == front
    else:
        _assert_same_stream(front, practice)


STOPS = {
    "a list": ["simulated"],
    "a string": "simulated",
    "two, the earlier wins": ["practice", "This"],
    "inside the leaked prefix": ["tant"],
    "a number (pydantic 1 reads it as text)": [5],
    "never met": ["zzz-not-there"],
}


@pytest.mark.parametrize("stop", list(STOPS.values()), ids=list(STOPS))
def test_stop_strings_end_the_answer_as_on_the_real_front(front_url: str, practice_fastchat_url: str,
                                                          stop: Any) -> None:
    body = _body({"role": "user", "content": "Hello"}, stop=stop)
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert front[0] == 200
    if stop == ["simulated"]:
        assert "simulated" not in front[2] and '"finish_reason": "stop"' in front[2]
    _assert_same_stream(front, practice)


@pytest.mark.parametrize("n,max_tokens", [(2, 2), (3, 4)])
def test_n_choices_stream_one_after_another(front_url: str, practice_fastchat_url: str, n: int,
                                            max_tokens: int) -> None:
    body = _body(_user("What size is this image?", IMAGE), n=n, max_tokens=max_tokens)
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert front[0] == 200 and f'"index": {n - 1}' in front[2]
    _assert_same_stream(front, practice)


ACCEPTED = {
    "stream \"yes\"": {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}], "stream": "yes",
                        "temperature": 0, "max_tokens": 3},
    "stream 1": {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}], "stream": 1,
                 "temperature": 0, "max_tokens": 3},
    "empty messages": _body(max_tokens=3),
    "last message from the assistant": _body({"role": "user", "content": "Hello"},
                                             {"role": "assistant", "content": "Hi"}, max_tokens=3),
}


@pytest.mark.parametrize("body", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_bodies_the_real_front_accepts(front_url: str, practice_fastchat_url: str, body: dict[str, Any]) -> None:
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert front[0] == 200
    _assert_same_stream(front, practice)


def test_stream_that_is_no_boolean_is_refused_on_both(front_url: str, practice_fastchat_url: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}], "stream": "maybe"}
    front, practice = _both(front_url, practice_fastchat_url, body)
    assert (practice[0], practice[1]) == (front[0], front[1]) == (400, "application/json")
    assert json.loads(practice[2])["code"] == json.loads(front[2])["code"] == 40001
