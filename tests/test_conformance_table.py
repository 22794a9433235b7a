"""The deviations table in README.md (maintainer section), on the practice server alone.

The real suites (tests/fastchat/test_conformance.py, tests/vllm/test_conformance.py) send the corpus of
tests/conformance.py to a real server and to the practice server and fail on any difference the table does not
list. Here, without a real server: the corpus is the same every run, every row of the table is well formed and
still matches corpus cases, and where a row gives the practice server's status (and code) the practice server
still answers some of the row's cases so.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

import httpx
import pytest
from conformance import corpus, generated, observe, read_deviations

from labkit.practice import serve_in_thread

MODEL = "llava-v1.6-34b"


@pytest.fixture(scope="module")
def keyed_urls() -> Iterator[dict[str, str]]:
    """Practice servers that enforce the key the corpus's key/enforced cases use."""
    with serve_in_thread(fast=True, dialect="fastchat", api_keys=("course-key",)) as fc, \
            serve_in_thread(fast=True, dialect="vllm", api_keys=("course-key",)) as vl:
        yield {"fastchat": fc, "vllm": vl}


def test_the_corpus_is_the_same_every_run() -> None:
    first, second = generated(MODEL, 60), generated(MODEL, 60)
    assert [(c.id, c.payload()) for c in first] == [(c.id, c.payload()) for c in second]
    assert len({c.id.split("/", 2)[2] for c in first}) > 30  # one mutation in turn, not one over and over


def test_the_corpus_has_400_generated_requests_and_every_hand_written_class() -> None:
    cases = corpus(MODEL)
    assert sum(c.id.startswith("gen/") for c in cases) >= 400
    assert {c.group for c in cases} >= {"gen", "method", "cors", "content-type", "key", "size", "image",
                                         "conversation"}
    assert len({c.id for c in cases}) == len(cases)


def test_every_row_is_well_formed_and_matches_corpus_cases() -> None:
    rows = read_deviations()
    assert len(rows) >= 5
    ids = [c.id for c in corpus(MODEL)]
    for row in rows:
        assert row.dialect in ("fastchat", "vllm", "both"), row
        assert row.reason and row.real and row.practice, row
        for pattern in row.cases:
            assert any(fnmatch.fnmatchcase(i, pattern) for i in ids), f"{pattern!r} matches no corpus case: {row}"


@pytest.mark.parametrize("dialect", ["fastchat", "vllm"])
def test_rows_give_the_status_the_practice_server_answers(dialect: str, fastchat_url: str, vllm_url: str,
                                                          keyed_urls: dict[str, str]) -> None:
    cases = [c for c in corpus(MODEL, 400, dialect) if not c.id.startswith("size/")]
    checked = 0
    with httpx.Client(timeout=60, trust_env=False) as client:
        for row in read_deviations():
            status, code = row.practice_status()
            if row.dialect not in (dialect, "both") or status is None:
                continue
            mine = [c for c in cases if any(fnmatch.fnmatchcase(c.id, p) for p in row.cases)][:6]
            if not mine:
                continue
            seen = []
            for case in mine:
                base = keyed_urls[dialect] if case.keyed else (fastchat_url if dialect == "fastchat" else vllm_url)
                got = observe(client, base, case)
                seen.append((got.status, got.code))
            assert any(s == status and (code is None or c == code) for s, c in seen), (row, seen)
            checked += 1
    assert checked >= 3
