"""What the practice server shows a student about parameters, system prompts and concurrency."""

from __future__ import annotations

import re
import statistics
import threading
import time

import openai
import pytest
from support import png_data_url

from labkit.practice import serve_in_thread

MODEL = "llava-v1.6-34b"
RED = png_data_url(300, 200, (210, 30, 30))


def two_tone() -> str:
    """Top half red, bottom half blue."""
    import base64
    import io

    from PIL import Image

    img = Image.new("RGB", (300, 300), (210, 30, 30))
    img.paste((30, 60, 200), (0, 150, 300, 300))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def ask(base: str, question: str = "Describe the image.", image: str | None = RED, system: str | None = None,
        **options: object) -> str:
    client = openai.OpenAI(base_url=base, api_key="dummy_key", max_retries=0)
    content: object = question if image is None else [
        {"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": image}}]
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    text = ""
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, stream=True, **options):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text.startswith("assistant\n")  # the leaked prefix, as the course backend sends it
    return text[len("assistant\n"):]


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.。])\s*", text) if s.strip()]


# --- sampling parameters --------------------------------------------------------------------------

def test_temperature_zero_repeats_exactly(any_url: str) -> None:
    answers = {ask(any_url, temperature=0) for _ in range(4)}
    assert len(answers) == 1


def test_a_seed_repeats_a_sampled_answer_and_other_seeds_differ(vllm_url: str) -> None:
    assert len({ask(vllm_url, temperature=1.5, seed=42) for _ in range(3)}) == 1
    by_seed = {ask(vllm_url, temperature=1.5, seed=s) for s in range(8)}
    assert len(by_seed) >= 2


def test_higher_temperature_varies_wording_and_detail_but_not_the_facts(fastchat_url: str) -> None:
    answers = [ask(fastchat_url, temperature=1.8) for _ in range(10)]
    assert len(set(answers)) >= 3, "a hot model words its answer differently each time"
    assert len({len(sentences(a)) for a in answers}) >= 2 or len(set(answers)) >= 5, "detail varies too"
    for a in answers:
        assert "red" in a and "300×200" in a
    cold = {ask(fastchat_url, temperature=0.1) for _ in range(6)}
    assert len(cold) < len(set(answers)), "a low temperature varies less"


def test_a_small_top_p_narrows_the_variation_to_the_likeliest_wording(vllm_url: str) -> None:
    greedy = ask(vllm_url, temperature=0)
    narrow = {ask(vllm_url, temperature=1.8, top_p=0.3) for _ in range(6)}
    assert narrow == {greedy}


# --- system prompts -------------------------------------------------------------------------------

def test_a_system_prompt_asking_for_chinese_gets_chinese(any_url: str) -> None:
    text = ask(any_url, "What colour is it?", system="Answer in Chinese.", temperature=0)
    assert "红色" in text and not re.search(r"[A-Za-z]{4,}", text)


def test_a_system_prompt_asking_for_brevity_gets_one_sentence(fastchat_url: str) -> None:
    full = ask(fastchat_url, "What colour is it?", temperature=0)
    brief = ask(fastchat_url, "What colour is it?", system="Answer briefly.", temperature=0)
    assert len(sentences(full)) >= 3
    assert len(sentences(brief)) == 1 and "red" in brief
    zh = ask(fastchat_url, "图片是什么颜色？", system="请简短回答。", temperature=0)
    assert len(sentences(zh)) == 1 and "红色" in zh


def test_an_ignored_system_prompt_changes_nothing_and_is_never_claimed(vllm_url: str) -> None:
    plain = ask(vllm_url, temperature=0)
    pirate = ask(vllm_url, system="Talk like a pirate.", temperature=0)
    assert pirate == plain
    assert "system prompt" not in pirate.lower() and "following" not in pirate.lower()


# --- less mechanical answers ----------------------------------------------------------------------

def test_the_layout_is_told_in_grouped_areas_not_nine_sentences(fastchat_url: str) -> None:
    text = ask(fastchat_url, "Describe the image in 100 words.", image=two_tone(), temperature=0)
    assert "part is mostly" not in text
    assert re.search(r"top row", text) and re.search(r"bottom row", text)
    said = sentences(text)
    assert len(said) == len(set(said)), "no sentence is said twice in a 100-word answer"


# --- one GPU with continuous batching ---------------------------------------------------------------

def timed_stream(base: str, out: list[tuple[float, float]], start: threading.Event) -> None:
    client = openai.OpenAI(base_url=base, api_key="dummy_key", max_retries=0)
    start.wait()
    began = time.perf_counter()
    stamps = []
    for chunk in client.chat.completions.create(
            model=MODEL, stream=True, max_tokens=30, temperature=0,
            messages=[{"role": "user", "content": "Write 60 words."}]):
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    out.append((stamps[0] - began, statistics.median(gaps)))


def run_streams(base: str, n: int) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    start = threading.Event()
    threads = [threading.Thread(target=timed_stream, args=(base, out, start)) for _ in range(n)]
    for t in threads:
        t.start()
    start.set()
    for t in threads:
        t.join(60)
    assert len(out) == n
    return out


@pytest.mark.timeout(120)
def test_more_streams_mean_a_later_first_token_and_slower_tokens() -> None:
    with serve_in_thread(fast=False, ttft=0.4, ttft_per_image=0, tokens_per_second=40) as base:
        (alone_ttft, alone_gap), = run_streams(base, 1)
        crowd = run_streams(base, 8)
    latest_ttft = max(t for t, _ in crowd)
    crowd_gap = statistics.median(g for _, g in crowd)
    # 8 prefills queue for the GPU (0.12 s each) and 8 streams share each decoding step (1.7× slower)
    assert latest_ttft > alone_ttft + 0.4, (alone_ttft, latest_ttft)
    assert crowd_gap > 1.3 * alone_gap, (alone_gap, crowd_gap)
