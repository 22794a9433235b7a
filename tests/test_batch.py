"""labkit.batch: bounded concurrency, per-item failures, resumable, nothing lost or duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import IMAGES

import labkit
from labkit.batch import BatchItem, items_from_folder, load_results, run_batch


def ok_lines(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in path.read_bytes().split(b"\n"):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if record.get("status") == "ok":
            counts[record["id"]] = counts.get(record["id"], 0) + 1
    return counts


def test_folder_batch_scores_and_saves(configured_fastchat: str, tmp_path: Path) -> None:
    expected = {"rocket.jpg": ["blue"], "coffee.jpg": ["orange"], "chelsea.jpg": ["brown", "green"]}
    items = items_from_folder(IMAGES, "What colour is it?", expected)
    assert [i.id for i in items] == sorted(p.name for p in IMAGES.iterdir() if p.suffix in (".jpg", ".png"))
    result = run_batch(items, tmp_path / "out" / "answers.jsonl", concurrency=3, progress=False)
    assert (result.answered, result.failed, result.skipped) == (5, 0, 0)
    records = load_results(tmp_path / "out" / "answers.jsonl")
    assert records["rocket.jpg"]["score"] == 1.0 and records["chelsea.jpg"]["score"] == 0.5
    assert not records["rocket.jpg"]["answer"].startswith("assistant")
    assert result.mean_score() == pytest.approx((1 + 1 + 0.5) / 3)


def test_failures_are_recorded_per_item(configured_fastchat: str, tmp_path: Path) -> None:
    items = [BatchItem("good", "Describe", IMAGES / "rocket.jpg"),
             BatchItem("missing", "Describe", tmp_path / "no.jpg"),
             BatchItem("too-long", "x " * 5000), BatchItem("also-good", "Hello")]
    out = tmp_path / "a.jsonl"
    result = run_batch(items, out, progress=False, max_tokens=5)
    assert (result.answered, result.failed) == (2, 2)
    records = load_results(out)
    assert records["missing"]["status"] == "error" and records["missing"]["error_type"] == "ImageError"
    assert "No file at" in records["missing"]["error"]
    assert records["too-long"]["error_type"] == "RequestRejected" and "context length" in records["too-long"]["error"]
    # resuming asks only the failed ones again
    again = run_batch(items, out, progress=False, max_tokens=5)
    assert (again.skipped, again.failed, again.answered) == (2, 2, 0)


def test_resume_skips_done_items_and_survives_a_cut_line(configured_fastchat: str, tmp_path: Path) -> None:
    items = [BatchItem(f"q{i}", f"Question {i}?") for i in range(6)]
    out = tmp_path / "answers.jsonl"
    out.write_text(json.dumps({"id": "q0", "status": "ok", "answer": "done before"}) + "\n"
                   + json.dumps({"id": "q1", "status": "ok", "answer": "done before"}) + "\n"
                   + '{"id": "q2", "status": "o')  # the kernel died mid-write
    result = run_batch(items, out, progress=False)
    assert (result.answered, result.skipped) == (4, 2)
    assert ok_lines(out) == {f"q{i}": 1 for i in range(6)}
    assert load_results(out)["q0"]["answer"] == "done before"


def test_a_line_cut_inside_a_chinese_character(configured_fastchat: str, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    whole = json.dumps({"id": "a", "status": "ok", "answer": "一只猫"}, ensure_ascii=False) + "\n"
    cut = json.dumps({"id": "b", "status": "ok", "answer": "一只橘色的猫"}, ensure_ascii=False).encode()
    for end in (cut.index("橘".encode()) + 1, cut.index("橘".encode()) + 3):  # mid-character, after one
        out.write_bytes(whole.encode() + cut[:end])
        result = run_batch([BatchItem("a", "x"), BatchItem("b", "这是什么？")], out, progress=False)
        assert (result.skipped, result.answered) == (1, 1)
        assert ok_lines(out) == {"a": 1, "b": 1}


def test_integer_ids_resume(configured_fastchat: str, tmp_path: Path) -> None:
    items = [BatchItem(i, f"Question {i}") for i in range(3)]  # type: ignore[arg-type]
    out = tmp_path / "answers.jsonl"
    run_batch(items, out, progress=False)
    again = run_batch(items, out, progress=False)
    assert (again.skipped, again.answered) == (3, 0)
    assert ok_lines(out) == {"0": 1, "1": 1, "2": 1}


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(labkit.LabkitError, match="repeated: a"):
        run_batch([BatchItem("a", "x"), BatchItem("a", "y")], tmp_path / "x.jsonl", progress=False)


KILLED_RUN = """
import sys, labkit
from labkit.practice import PracticeConfig, serve_in_thread
from labkit.batch import BatchItem, run_batch
with serve_in_thread(PracticeConfig(ttft=0.05, tokens_per_second=60)) as url:
    labkit.configure(base_url=url)
    items = [BatchItem(f"q{i}", f"Question {i}: describe it in about 20 words") for i in range(30)]
    run_batch(items, sys.argv[1], concurrency=4, progress=False)
"""


def test_nothing_lost_or_duplicated_when_killed(configured_fastchat: str, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(out)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 6):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = ok_lines(out)
    assert 6 <= len(before) < 30, "killed part-way"
    items = [BatchItem(f"q{i}", f"Question {i}: describe it in about 20 words") for i in range(30)]
    result = run_batch(items, out, concurrency=8, progress=False)
    assert result.skipped == len(before) and result.answered == 30 - len(before)
    assert ok_lines(out) == {f"q{i}": 1 for i in range(30)}
