"""The paced practice server reads a prompt as a real prefill does, and answers without invented sentences."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

import labkit
from labkit.practice import PracticeConfig, serve_in_thread
from labkit.practice.engine import Engine
from labkit.practice.vision import image_tokens


def test_time_to_first_token_grows_with_the_image_tokens_sent(tmp_path: Path) -> None:
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.new("RGB", (300, 300), (200, 30, 30)).save(small)
    Image.new("RGB", (672, 672), (200, 30, 30)).save(big)
    assert image_tokens(300, 300) == 1176 and image_tokens(672, 672) == 2928
    config = PracticeConfig(fast=False, ttft=0.05, prefill_tokens_per_second=1500, tokens_per_second=200)
    # a bigger image costs (2928 - 1176) / 1500 = 1.2 s more to read, whatever else the machine is doing
    with serve_in_thread(config) as url:
        labkit.configure(base_url=url)
        ttft = {}
        for name, path in (("small", small), ("big", big)):
            reply = labkit.chat("What colour is this?", image=path, max_tokens=2, display=False)
            assert reply.text and reply.ttft is not None
            ttft[name] = reply.ttft
    engine = Engine(config)
    assert ttft["big"] >= engine.prefill_seconds(2928, 1) * 0.95, ttft
    assert ttft["small"] >= engine.prefill_seconds(1176, 1) * 0.95, ttft
    assert ttft["big"] > ttft["small"] + 0.6, f"time to first token does not grow with the image tokens: {ttft}"


def test_prefill_is_a_small_base_plus_a_cost_per_prompt_token() -> None:
    engine = Engine(PracticeConfig())
    text_only, small_image, big_image = (engine.prefill_seconds(n) for n in (20, 1176 + 20, 2928 + 20))
    assert text_only < 0.2 < small_image < big_image < 1.0, (text_only, small_image, big_image)


def test_a_conversation_gets_no_invented_turn_sentence(configured_fastchat: str) -> None:
    for system, questions in (("", ["What colour is this?", "And how bright is it?", "What is at the top?"]),
                              ("", ["这是什么颜色？", "亮度怎么样？", "上方是什么？"])):
        conv = labkit.Conversation(system=system)
        conv.ask(questions[0], image=Path(__file__).parent.parent / "notebooks" / "images" / "rocket.jpg",
                 display=False)
        for question in questions[1:]:
            text = conv.ask(question, display=False).text
            assert "turn" not in text.lower() and "对话的第" not in text and "轮" not in text, text
