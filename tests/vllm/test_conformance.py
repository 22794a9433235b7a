"""Differential conformance with vLLM 0.32 (the CPU build, the tiny model): the corpus of
tests/conformance.py — at least 400 generated bodies plus the hand-written classes — is sent byte for byte
to the engine and to the practice server's vLLM dialect (same model name, same context length). Every
difference in status, the headers a client reads, error code and message, or stream framing must be listed
in README.md's deviations table. The model's words are gibberish here, so only the framing is compared."""

from __future__ import annotations

import time
from collections.abc import Callable

from conformance import compare_all, corpus, read_deviations

from labkit.practice import serve_in_thread
from labkit.serve import VLLMServer

SERVED_NAME = "llava-v1.6-34b"  # as tests/vllm/conftest.py serves it




def test_corpus_differs_only_as_the_deviations_table_says(vllm_server: VLLMServer,
                                                          record_timing: Callable[[str, float], None]) -> None:
    # Keyed cases need a server that enforces keys: the session's engine does not (that would be a second
    # engine, two more minutes); the FastChat suite runs them against a keyed front.
    cases = [c for c in corpus(SERVED_NAME, 400, "vllm") if not c.keyed]
    assert sum(c.id.startswith("gen/") for c in cases) >= 400
    started = time.monotonic()
    with serve_in_thread(fast=True, dialect="vllm", model=SERVED_NAME,
                         max_model_len=vllm_server.max_model_len) as practice:
        tally = compare_all("vllm", cases, lambda c: vllm_server.base_url, lambda c: practice, read_deviations())
    record_timing(f"conformance corpus ({tally.sent} requests to each server)", time.monotonic() - started)
    print(tally.line())
    assert not tally.unlisted, ("differences from vLLM that README.md's deviations table does not list "
                                f"({len(tally.unlisted)}):\n" + "\n".join(tally.unlisted[:30]))
    assert tally.identical > tally.sent // 2, tally.line()
