"""Stop strings, ``n`` choices and the bodies pydantic lets through, on the practice server over HTTP
with the real openai client (tests/fastchat compares the same with FastChat's own front)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from support import png_data_url

from labkit.practice import serve_in_thread

MODEL = "llava-v1.6-34b"
QUESTION = [{"type": "text", "text": "What size is this image?"},
            {"type": "image_url", "image_url": {"url": png_data_url(500, 300)}}]


def _chunks(base: str, **options: object) -> list[dict]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "stream": True,
            "temperature": 0, **options}
    r = httpx.post(f"{base}/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.text.endswith("data: [DONE]\n\n")
    return [json.loads(e[6:]) for e in r.text[:-2].split("\n\n") if e.startswith("data: {")]


def _read(base: str, **options: object) -> tuple[dict[int, str], dict[int, str], list[str]]:
    """Per choice index: the text a user sees, the finish reason; and every content piece sent."""
    client = openai.OpenAI(base_url=base, api_key="dummy_key", max_retries=0)
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}],
                                            stream=True, temperature=0, **options)
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    pieces: list[str] = []
    for chunk in stream:
        for choice in chunk.choices:
            texts.setdefault(choice.index, "")
            if choice.delta.content:
                texts[choice.index] += choice.delta.content
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    return texts, reasons, pieces


def test_a_stop_string_ends_the_answer_before_it(any_url: str) -> None:
    full, reasons, _ = _read(any_url)
    assert reasons == {0: "stop"}
    words = full[0].split()
    stop = words[len(words) // 2]
    texts, reasons, _ = _read(any_url, stop=[stop])
    assert texts == {0: full[0][: full[0].index(stop)]} and reasons == {0: "stop"}
    assert stop not in texts[0]
    texts, reasons, _ = _read(any_url, stop=stop)  # a single string as well
    assert texts == {0: full[0][: full[0].index(stop)]} and reasons == {0: "stop"}


def test_the_earliest_stop_string_wins_and_an_absent_one_changes_nothing(any_url: str) -> None:
    full = _read(any_url)[0][0]
    words = full.split()
    early, late = words[3], words[-2]
    cut = min(full.index(early), full.index(late))
    assert _read(any_url, stop=[late, early, "zzz-never-said"])[0] == {0: full[:cut]}
    assert _read(any_url, stop=["zzz-never-said"])[:2] == ({0: full}, {0: "stop"})


def test_fastchat_relays_each_token_with_a_stop_string_vllm_holds_back(fastchat_url: str, vllm_url: str) -> None:
    assert _read(fastchat_url, stop=["zzz"])[2] == _read(fastchat_url)[2]
    plain, held = _read(vllm_url)[2], _read(vllm_url, stop=["zzz"])[2]
    assert "".join(held) == "".join(plain) and held[0] == plain[0][:-2]  # two characters kept back


def test_max_tokens_before_the_stop_string_is_length(any_url: str) -> None:
    full = _read(any_url)[0][0]
    texts, reasons, pieces = _read(any_url, stop=[full.split()[-1]], max_tokens=2)
    assert reasons == {0: "length"} and len(pieces) <= 2 and full.startswith(texts[0])


def test_vllm_never_sends_the_start_of_a_stop_string_across_tokens(vllm_url: str) -> None:
    """vLLM keeps back what could still become a stop string; FastChat (its worker) relays each token."""
    pieces = _read(vllm_url)[2]
    full = "".join(pieces)
    j = len(pieces) // 2
    while len(pieces[j]) < 3 or len(pieces[j + 1]) < 3:
        j += 1
    stop = pieces[j][-2:] + pieces[j + 1][:2]  # spans two tokens
    cut = full.index(stop)
    texts, reasons, sent = _read(vllm_url, stop=[stop])
    assert texts == {0: full[:cut]} and reasons == {0: "stop"}
    assert "".join(sent) == full[:cut]


def test_fastchat_streams_n_choices_one_after_another(fastchat_url: str) -> None:
    one = _read(fastchat_url, max_tokens=5)
    texts, reasons, _ = _read(fastchat_url, n=3, max_tokens=5)
    assert texts == {0: one[0][0], 1: one[0][0], 2: one[0][0]}
    assert reasons == {0: "length", 1: "length", 2: "length"}
    order = [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in _chunks(fastchat_url, n=2,
                                                                                        max_tokens=2)]
    assert order == [(0, None)] * 3 + [(1, None)] * 3 + [(0, "length"), (1, "length")]


def test_fastchat_answers_n_choices_without_streaming_with_the_usage_summed() -> None:
    with serve_in_thread(fast=True, dialect="fastchat", allow_non_stream=True) as base:
        client = openai.OpenAI(base_url=base, api_key="dummy_key", max_retries=0)
        done = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}],
                                              n=2, max_tokens=4, temperature=0)
    assert [c.index for c in done.choices] == [0, 1]
    assert done.choices[0].message.content == done.choices[1].message.content
    assert done.usage is not None and done.usage.completion_tokens == 8


def test_too_many_choices_are_refused_with_the_limit(fastchat_url: str) -> None:
    client = openai.OpenAI(base_url=fastchat_url, api_key="dummy_key", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="at most 16 choices"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=17, stream=True)


@pytest.mark.parametrize("flag", ["yes", "true", 1, "on"])
def test_stream_flags_pydantic_reads_as_true_stream(any_url: str, flag: object) -> None:
    chunks = _chunks(any_url, stream=flag, max_tokens=2)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_fastchat_answers_an_empty_conversation_and_one_ending_with_the_assistant(fastchat_url: str) -> None:
    for messages in ([], [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]):
        r = httpx.post(f"{fastchat_url}/chat/completions", timeout=30,
                       json={"model": MODEL, "messages": messages, "stream": True, "max_tokens": 3})
        assert r.status_code == 200 and '"finish_reason": "length"' in r.text, r.text
