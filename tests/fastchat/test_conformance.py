"""Differential conformance with FastChat 0.2.36's real front (and our worker): the whole corpus of
tests/conformance.py — at least 400 generated bodies plus the hand-written classes — is sent byte for byte
to the front and to the practice server's FastChat dialect. Every difference in status, the headers a client
reads, error code and message, or stream framing must be listed in README.md's deviations table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance import compare_all, corpus, read_deviations

from labkit.practice import serve_in_thread

MODEL = "llava-v1.6-34b"


@pytest.fixture(scope="module")
def keyed_practice() -> Iterator[str]:
    with serve_in_thread(fast=True, dialect="fastchat", api_keys=("course-key",)) as url:
        yield url


def test_corpus_differs_only_as_the_deviations_table_says(front_url: str, front_with_keys: str,
                                                          practice_fastchat_url: str, keyed_practice: str) -> None:
    cases = corpus(MODEL)
    assert sum(c.id.startswith("gen/") for c in cases) >= 400
    table = read_deviations()
    tally = compare_all("fastchat", cases, lambda c: front_with_keys if c.keyed else front_url,
                        lambda c: keyed_practice if c.keyed else practice_fastchat_url, table)
    print(tally.line())
    assert not tally.unlisted, ("differences from the real front that README.md's deviations table does not list "
                                f"({len(tally.unlisted)}):\n" + "\n".join(tally.unlisted[:30]))
    assert tally.identical > tally.sent // 2, tally.line()
