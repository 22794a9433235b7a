"""Asking many questions: bounded concurrency, a progress bar, answers saved as they arrive,
resumable after an interruption, failures recorded per item.

The results file is JSON Lines, one record per finished item, appended and flushed to disk as each
answer arrives (only the main thread writes). After a crash or a killed kernel, :func:`run_batch`
with the same file skips the items already answered, retries the failed ones, and ignores a line
cut off half-way; nothing is lost or duplicated (:func:`load_results` keeps the last record of
each item).

Example:
    >>> from labkit.batch import BatchItem, run_batch
    >>> items = [BatchItem("cat", "What colour is the cat?", "images/chelsea.jpg", expected=("brown",))]
    >>> result = run_batch(items, "answers.jsonl", concurrency=4)  # doctest: +SKIP
"""

from __future__ import annotations

# `__tracebackhide__ = True` in a function makes IPython leave its frame out of tracebacks, so a
# student sees their own line and labkit's message, not labkit's internals.

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .config import Settings, client as make_client, load_settings
from .errors import LabkitError
from .images import ImageSource
from .streaming import stream_chat

__all__ = ["BatchItem", "BatchResult", "run_batch", "load_results", "items_from_folder", "score_keywords"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class BatchItem:
    """One question: a unique ``id``, the ``question``, an optional ``image``, and ``expected``
    keywords for scoring."""

    id: str
    question: str
    image: ImageSource | None = None
    expected: tuple[str, ...] = ()


def score_keywords(answer: str, keywords: Sequence[str]) -> float:
    """The fraction of ``keywords`` found in ``answer`` (case-insensitive); 1.0 when none are expected.

    Example:
        >>> score_keywords("A brown cat on a mat", ["cat", "brown", "dog"])
        0.6666666666666666
    """
    if not keywords:
        return 1.0
    lowered = answer.lower()
    return sum(1 for k in keywords if k.lower() in lowered) / len(keywords)


def items_from_folder(folder: str | os.PathLike[str], question: str,
                      expected: dict[str, Sequence[str]] | None = None) -> list[BatchItem]:
    """One :class:`BatchItem` per image in ``folder`` (sorted by name), all asked ``question``.

    ``expected`` maps a file name to the keywords its answer should contain.

    Example:
        >>> items = items_from_folder("images", "What colour dominates?")  # doctest: +SKIP
    """
    __tracebackhide__ = True
    root = Path(folder)
    if not root.is_dir():
        raise LabkitError(f"{str(folder)!r} is not a folder: pass the folder that holds the images.")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LabkitError(f"No images in {str(folder)!r}: it needs files ending in {', '.join(IMAGE_SUFFIXES)}.")
    expected = expected or {}
    return [BatchItem(p.name, question, p, tuple(expected.get(p.name, ()))) for p in files]


def load_results(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The last record of each item in a results file; a line cut off by a crash is ignored.

    Example:
        >>> load_results("no-such-file.jsonl")
        {}
    """
    records: dict[str, dict[str, Any]] = {}
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return records
    for line in data.split(b"\n"):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # the tail of a write interrupted by a crash (perhaps mid-character)
        if isinstance(record, dict) and "id" in record:
            records[str(record["id"])] = record
    return records


@dataclass
class BatchResult:
    """What a run did. ``records`` holds the latest record of every item in the file."""

    path: Path
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    answered: int = 0
    failed: int = 0
    skipped: int = 0
    wall_time: float = 0.0
    interrupted: bool = False

    def summary(self) -> str:
        """One line about the run.

        Example:
            >>> BatchResult(Path("a.jsonl"), answered=3, failed=1, wall_time=2.0).summary()
            'a.jsonl: 3 answered, 1 failed, 0 already done, in 2.0 s'
        """
        note = " (interrupted: run again to resume)" if self.interrupted else ""
        return (f"{self.path}: {self.answered} answered, {self.failed} failed, {self.skipped} already done, "
                f"in {self.wall_time:.1f} s{note}")

    def mean_score(self) -> float | None:
        """The mean keyword score over answered items that have one.

        Example:
            >>> BatchResult(Path("a.jsonl"), records={"x": {"status": "ok", "score": 0.5}}).mean_score()
            0.5
        """
        scores = [r["score"] for r in self.records.values() if r.get("status") == "ok" and "score" in r]
        return sum(scores) / len(scores) if scores else None


def _ask(item: BatchItem, settings: Settings, client: Any, options: dict[str, Any],
         stop: threading.Event) -> dict[str, Any]:
    record: dict[str, Any] = {"id": str(item.id), "question": item.question,
                              "image": str(item.image) if isinstance(item.image, (str, os.PathLike)) else None}
    started = time.perf_counter()
    try:
        stream = stream_chat(item.question, item.image, settings=settings, client=client, **options)
        for _ in stream:
            if stop.is_set():  # the run was interrupted: stop generating, the record is dropped
                stream.close()
                break
        reply = stream.reply
        record.update(status="ok", answer=reply.text, finish_reason=reply.finish_reason,
                      ttft=reply.ttft, total_time=round(reply.total_time, 4),
                      completion_tokens=reply.completion_tokens)
        if item.expected:
            record.update(expected=list(item.expected), score=score_keywords(reply.text, item.expected))
    except Exception as exc:  # recorded per item; the batch goes on
        record.update(status="error", error_type=exc.__class__.__name__, error=str(exc),
                      partial=getattr(exc, "partial_text", None), total_time=round(time.perf_counter() - started, 4))
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def _append(handle: Any, record: dict[str, Any]) -> None:
    handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    handle.flush()
    os.fsync(handle.fileno())


def run_batch(
    items: Iterable[BatchItem],
    out: str | os.PathLike[str],
    *,
    concurrency: int = 8,
    retry_failed: bool = True,
    progress: bool = True,
    settings: Settings | None = None,
    **options: Any,
) -> BatchResult:
    """Ask every item's question, ``concurrency`` at a time, appending each answer to ``out``.

    Items already answered in ``out`` are skipped (failed ones are asked again unless
    ``retry_failed=False``). A failure is recorded for its item and the run goes on. Jupyter's stop
    button (or Ctrl-C) stops the run; what was answered is already on disk. ``options`` go to
    :func:`labkit.stream_chat` (``max_tokens``, ``temperature`` …).

    Example:
        >>> result = run_batch(items_from_folder("images", "Describe the image"), "answers.jsonl")  # doctest: +SKIP
        >>> print(result.summary())                                                                 # doctest: +SKIP
    """
    __tracebackhide__ = True
    items = list(items)
    duplicates = sorted(i for i, n in Counter(str(item.id) for item in items).items() if n > 1)
    if duplicates:
        raise LabkitError(f"Item ids must be unique; repeated: {', '.join(duplicates[:5])}. Give each item its own id.")
    if concurrency < 1:
        raise LabkitError(f"concurrency={concurrency} must be at least 1 (8–16 suits the course backend).")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = load_results(path)

    def finished(item: BatchItem) -> bool:
        record = done.get(str(item.id))
        return record is not None and (record.get("status") == "ok" or not retry_failed)

    todo = [item for item in items if not finished(item)]
    result = BatchResult(path, skipped=len(items) - len(todo))
    settings = settings or load_settings()
    client = make_client(settings)
    stop = threading.Event()
    started = time.perf_counter()
    bar = tqdm(total=len(todo), desc="questions", unit="q", disable=not progress)
    with path.open("ab+") as handle:
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")  # a crash cut the last line: start a fresh one
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="labkit-batch")
        pending: set[Future[dict[str, Any]]] = {pool.submit(_ask, item, settings, client, options, stop)
                                                for item in todo}
        try:
            while pending:
                completed, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in completed:
                    record = future.result()
                    _append(handle, record)
                    done[record["id"]] = record
                    if record["status"] == "ok":
                        result.answered += 1
                    else:
                        result.failed += 1
                    bar.update(1)
                    bar.set_postfix(failed=result.failed, refresh=False)
        except KeyboardInterrupt:
            result.interrupted = True
            stop.set()  # running requests close their streams; their answers are not recorded
        finally:
            pool.shutdown(wait=not result.interrupted, cancel_futures=True)
            bar.close()
    result.records = {str(item.id): done[str(item.id)] for item in items if str(item.id) in done}
    result.wall_time = time.perf_counter() - started
    if progress:
        print(result.summary())
    return result
