"""The practice server's context limit, counted as each real front end counts it.

vLLM counts the prompt as the model sees it (text plus each image's anyres tokens), refuses what does
not fit with its "maximum context length" 400, and fills the rest of the context when max_tokens is
absent. FastChat 0.2.36's check_length counts the text only: it caps max_tokens by what the text
leaves, and answers 40303 only when the text alone fills the context.
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from support import png_data_url

from labkit.practice import serve_in_thread

MODEL = "llava-v1.6-34b"
IMAGE_672 = png_data_url(672, 672, (30, 120, 200))  # 2,928 image tokens (anyres 2×2 grid, unpadded)


def user(text: str, image: str | None = None) -> dict:
    if image is None:
        return {"role": "user", "content": text}
    return {"role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image}}]}


def stream(base: str, messages: list[dict], **extra: object) -> tuple[str, str | None, dict | None]:
    """(text, finish reason, usage) as the openai client sees them."""
    client = openai.OpenAI(base_url=base, api_key="dummy_key", max_retries=0)
    text, reason, usage = "", None, None
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, stream=True, **extra):
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            reason = chunk.choices[0].finish_reason or reason
    return text, reason, usage


def usage_of(base: str, messages: list[dict], **extra: object) -> dict:
    _, _, usage = stream(base, messages, stream_options={"include_usage": True}, **extra)
    assert usage is not None
    return usage


def test_vllm_usage_counts_the_image_tokens(vllm_url: str) -> None:
    with_image = usage_of(vllm_url, [user("What is it?", IMAGE_672)])
    without = usage_of(vllm_url, [user("What is it?")])
    assert with_image["prompt_tokens"] - without["prompt_tokens"] == 2928
    assert with_image["total_tokens"] == with_image["prompt_tokens"] + with_image["completion_tokens"]


def test_vllm_refuses_max_tokens_beyond_the_context_in_its_words(vllm_url: str) -> None:
    """vLLM 0.32 (tests/fixtures/captures/vllm-0.32-cpu-context-2048.txt): max_tokens above the context is
    refused; a prompt plus max_tokens over it is not: max_tokens is capped at what the prompt leaves."""
    messages = [user("What is it?", IMAGE_672)]
    prompt = usage_of(vllm_url, messages)["prompt_tokens"]
    client = openai.OpenAI(base_url=vllm_url, api_key="dummy_key", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=messages, stream=True, max_tokens=4097)
    assert err.value.status_code == 400
    assert err.value.body["message"] == (  # type: ignore[index]
        "max_tokens=4097 cannot be greater than max_model_len=4096. Please request fewer output tokens. "
        "(parameter=max_tokens, value=4097)")
    text, reason, usage = stream(vllm_url, messages, max_tokens=2000, stream_options={"include_usage": True})
    assert text and usage is not None and usage["prompt_tokens"] == prompt
    assert usage["completion_tokens"] <= 4096 - prompt


def test_vllm_refuses_a_prompt_that_fills_the_context(vllm_url: str) -> None:
    r = httpx.post(f"{vllm_url}/chat/completions", timeout=30, json={
        "model": MODEL, "stream": True, "messages": [user("word " * 1200, IMAGE_672)]})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert re.fullmatch(r"Input length \(\d+\) exceeds model's maximum context length \(4096\)\.", message)
    r = httpx.post(f"{vllm_url}/chat/completions", timeout=30, json={
        "model": MODEL, "stream": True, "messages": [user("word " * 5000)]})
    assert r.json()["error"]["message"] == (
        "This model's maximum context length is 4096 tokens. However, your prompt contains at least 4097 input "
        "tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input "
        "prompt. (parameter=input_tokens, value=4097)")


def test_vllm_without_max_tokens_fills_only_what_the_context_leaves() -> None:
    with serve_in_thread(fast=True, dialect="vllm", max_model_len=3000) as base:
        messages = [user("Describe this image in 3000 words.", png_data_url(336, 336))]
        text, reason, usage = stream(base, messages, stream_options={"include_usage": True})
        assert usage is not None and reason == "length"
        assert usage["prompt_tokens"] + usage["completion_tokens"] == 3000
        assert usage["completion_tokens"] > 100 and len(text.split()) > 100


def test_fastchat_counts_the_text_only_and_caps_max_tokens(fastchat_url: str) -> None:
    # 2,928 image tokens + 2,000 would overflow vLLM; FastChat 0.2.36 does not count the image, so the
    # request is accepted and the answer simply ends when it is done (or when the context is full).
    text, reason, _ = stream(fastchat_url, [user("What is it?", IMAGE_672)], max_tokens=2000)
    assert text and reason == "stop"


def test_fastchat_caps_a_long_answer_at_the_text_room() -> None:
    with serve_in_thread(fast=True, dialect="fastchat", max_model_len=200, leak_role_prefix=False) as base:
        messages = [user("Write 500 words.")]
        r = httpx.post(f"{base}/chat/completions", timeout=30,
                       json={"model": MODEL, "stream": True, "messages": messages, "max_tokens": 1000})
        events = [json.loads(x[6:]) for x in r.text.split("\n\n") if x.startswith("data: {")]
        contents = [e["choices"][0]["delta"].get("content") for e in events if e["choices"][0]["delta"].get("content")]
        assert events[-1]["choices"][0]["finish_reason"] == "length"
        prompt_text_tokens = 4 + 3  # one message (template) + "Write 500 words."
        assert len(contents) == 200 - prompt_text_tokens


def test_fastchat_40303_when_the_text_alone_fills_the_context(fastchat_url: str) -> None:
    r = httpx.post(f"{fastchat_url}/chat/completions", timeout=30,
                   json={"model": MODEL, "stream": True, "messages": [user("word " * 5000)]})
    assert r.status_code == 400
    assert r.json() == {"object": "error", "code": 40303, "message":
                        "This model's maximum context length is 4096 tokens. However, your messages resulted in "
                        "5005 tokens. Please reduce the length of the messages."}


def test_fastchat_image_over_a_small_context_ends_at_once_with_length() -> None:
    # The text fits, the image does not: FastChat lets it through; the engine generates nothing.
    with serve_in_thread(fast=True, dialect="fastchat", max_model_len=2048) as base:
        text, reason, _ = stream(base, [user("What is it?", IMAGE_672)])
        assert text == "" and reason == "length"


def test_models_card_reports_the_configured_context() -> None:
    with serve_in_thread(fast=True, dialect="vllm", max_model_len=2048) as base:
        card = httpx.get(f"{base}/models").json()["data"][0]
        assert card["max_model_len"] == 2048
