"""The real engine started with ``--max-model-len 2048`` (what labkit's out-of-memory advice recommends):

- the differential conformance corpus (tests/conformance.py: 400 generated bodies plus the hand-written
  classes) sent byte for byte to the engine and to the practice server's vLLM dialect with the same context;
  every difference must be listed in README.md's deviations table;
- a 12-turn ``Conversation`` with two images: every turn answered, or refused with a clear
  ``RequestRejected`` when one image alone cannot fit the context.

This module sorts first: its engine is stopped before the session's 4,096-token engine starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conformance import compare_all, corpus, read_deviations
from PIL import Image

import labkit
from labkit.practice import serve_in_thread
from labkit.serve import VLLMServer

SERVED_NAME = "llava-v1.6-34b"  # as tests/vllm/conftest.py serves it
Timer = Callable[[str, float], None]


def test_corpus_differs_only_as_the_deviations_table_says(engine_2048: VLLMServer, record_timing: Timer) -> None:
    # Keyed cases need an engine started with --api-key (a third engine): the FastChat suite sends them.
    cases = [c for c in corpus(SERVED_NAME, 400, "vllm") if not c.keyed]
    assert sum(c.id.startswith("gen/") for c in cases) >= 400
    started = time.monotonic()
    with serve_in_thread(fast=True, dialect="vllm", model=SERVED_NAME, max_model_len=2048) as practice:
        tally = compare_all("vllm", cases, lambda c: engine_2048.base_url, lambda c: practice, read_deviations())
    record_timing(f"conformance corpus, {tally.sent} requests to each server", time.monotonic() - started)
    print(tally.line())
    assert not tally.unlisted, ("differences from vLLM that README.md's deviations table does not list "
                                f"({len(tally.unlisted)}):\n" + "\n".join(tally.unlisted[:30]))
    assert tally.identical > tally.sent // 2, tally.line()


def test_twelve_turns_with_two_images_in_a_2048_token_context(engine_2048: VLLMServer, sample_photo: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    engine_2048.point_labkit()
    small = Image.new("RGB", (320, 200), (30, 90, 200))
    conv = labkit.Conversation(system="Answer briefly.")
    outcomes: list[str] = []
    for turn in range(12):
        images = [sample_photo] if turn == 2 else [small] if turn == 6 else []
        question = f"Turn {turn}: what do you see, and what did I ask before?" + (" Tell me more." * 60
                                                                                  if not images else "")
        try:
            conv.ask(question, *images, max_tokens=8, display=False)
            outcomes.append("answered")
        except labkit.RequestRejected as exc:
            # the photo is sent as the model sees it (672×504): alone it needs about 2,340 tokens
            assert images == [sample_photo], (turn, str(exc))
            assert "2048-token context" in str(exc) or "context length (2048)" in str(exc), str(exc)
            outcomes.append("refused")
    assert conv.context_tokens == 2048, "learnt from the engine's /v1/models"
    assert outcomes.count("answered") >= 11 and len(outcomes) == 12, outcomes
    out = capsys.readouterr().out
    assert "context is 2048 tokens" in out
    for line in out.splitlines():
        assert line.count("oldest") <= 1 and "to stay within" not in line, line
    print("\n".join(out.splitlines()[:8]))
