"""Asking many questions: bounded concurrency, a progress bar, answers saved as they arrive,
resumable after an interruption, failures recorded per item.

The results file is JSON Lines, one record per finished item, appended and handed to the operating
system as each answer arrives (only the main thread writes), so a killed kernel loses nothing; it is
synced to the disk itself at most once a second and at the end (a sync per answer cost more than a
short answer takes), so a power cut loses at most the last second's answers, which a resume asks
again. After a crash or a killed kernel, :func:`run_batch`
with the same file skips the items already answered, retries the failed ones, and ignores a line
cut off half-way; nothing is lost or duplicated (:func:`load_results` keeps the last record of
each item).

Example:
    >>> from labkit.batch import BatchItem, run_batch
    >>> items = [BatchItem("cat", "What colour is the cat?", "images/chelsea.jpg", expected=("brown",))]
    >>> result = run_batch(items, "answers.jsonl", concurrency=4)  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import backend
from .config import Settings, load_settings
from .errors import OutputError, UsageError
from .i18n import _
from .images import ImageSource
from .streaming import stream_chat

try:  # POSIX: an advisory lock the kernel releases when the process dies, however it dies
    import fcntl
except ImportError:  # Windows: no lock (two runs on one file are then not refused)
    fcntl = None  # type: ignore[assignment]

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
        raise UsageError(_("{folder!r} is not a folder: pass the folder that holds the images.").format(
            folder=_readable(str(folder))))
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(_("No images in {folder!r}: it needs files ending in {suffixes}.").format(
            folder=_readable(str(folder)), suffixes=", ".join(IMAGE_SUFFIXES)))
    expected = expected or {}
    return [BatchItem(p.name, question, p, tuple(expected.get(p.name, ()))) for p in files]


def _readable(text: str) -> str:
    """Text as a person can read it: a file name that is not valid UTF-8 (a GBK name from a zip,
    decoded by Python with surrogate escapes) shows its undecodable bytes as ``\\xNN``.

    Example:
        >>> _readable("ok.jpg"), _readable(os.fsdecode(b"\\xc3\\xa8\\xb6.jpg"))
        ('ok.jpg', 'è\\\\xb6.jpg')
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def load_results(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The last record of each item in a results file. A line cut off by a crash is ignored; other
    damaged lines are skipped with a warning (the file itself is never changed).

    Example:
        >>> load_results("no-such-file.jsonl")
        {}
    """
    __tracebackhide__ = True
    records: dict[str, dict[str, Any]] = {}
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return records
    except PermissionError:
        raise OutputError(_("labkit may not read {path}: change its permissions (chmod u+rw) or pass another "
                            "results file.").format(path=_readable(str(path)))) from None
    lines = data.split(b"\n")
    damaged: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = None
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            cut = exc.start >= len(line.rstrip()) - 3  # a write cut off mid-character by a crash
        except json.JSONDecodeError as exc:
            # a write cut off by a crash (expected, ignored): the text ends inside a string or a value
            cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(exc.doc.rstrip()) - 1
        if not (isinstance(record, dict) and "id" in record):
            if record is not None or not cut:
                damaged.append(number)
            continue
        records[str(record["id"])] = record
    if damaged:
        warnings.warn(_("{path}: skipped {n} damaged line(s) that are not result records (line {lines}); the file "
                        "is kept as it is, and their items are asked again.").format(
                        path=_readable(str(path)), n=len(damaged), lines=", ".join(map(str, damaged[:5]))),
                      stacklevel=2)
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
        note = _(" (interrupted: run again to resume)") if self.interrupted else ""
        return _("{path}: {answered} answered, {failed} failed, {skipped} already done, in {seconds:.1f} s").format(
            path=self.path, answered=self.answered, failed=self.failed, skipped=self.skipped,
            seconds=self.wall_time) + note

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
    image = os.fspath(item.image) if isinstance(item.image, (str, os.PathLike)) else None
    record: dict[str, Any] = {"id": str(item.id), "question": item.question,
                              "image": os.fsdecode(image) if image is not None else None}
    started = time.perf_counter()
    try:
        stream = stream_chat(item.question, item.image, settings=settings, client=client, **options)
        stream.sleep = stop.wait  # a rate-limit wait ends when the run is stopped
        stream.notify = tqdm.write  # a note above the progress bar, not through it
        for _delta in stream:
            if stop.is_set():  # the run was interrupted: stop generating, the record is dropped
                stream.close()
                break
        reply = stream.reply
        if reply.finish_reason is None:  # stopped by the run's stop button: not an answer, never "ok"
            record.update(status="error", error_type="Stopped", error=_("the run was stopped"),
                          partial=reply.text, total_time=round(time.perf_counter() - started, 4))
            return record
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


def _write_failed(path: Path, exc: OSError) -> OutputError:
    """The error for a results file that could not be written: which file, why, and the fix."""
    where = _readable(str(path))
    reason = exc.strerror or exc.__class__.__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = _("The disk (or your quota) is full: free some space, or pass a results file on another disk")
    elif exc.errno == errno.EFBIG:
        fix = _("The file is larger than this system allows: pass a new results file")
    else:
        fix = _("Fix that, or pass a results file elsewhere")
    return OutputError(_("Could not write the results to {path}: {reason}. {fix}, then run again: the answers "
                         "already in the file are kept and only the missing ones are asked.").format(
                         path=where, reason=reason, fix=fix))


SYNC_EVERY = 1.0  # seconds between syncs of the results file to the disk


def _sync(handle: Any, path: Path) -> None:
    """The results so far, on the disk itself (not only in the operating system's cache)."""
    __tracebackhide__ = True
    try:
        os.fsync(handle.fileno())
    except OSError as exc:
        raise _write_failed(path, exc) from None


def _append(handle: Any, record: dict[str, Any]) -> None:
    try:
        line = json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A name that is not valid UTF-8 (surrogate escapes): \\uXXXX escapes store it losslessly, so
        # a resume finds the same id; the readable form goes alongside for people and other tools.
        record = dict(record, id_readable=_readable(record["id"]))
        if record.get("image"):
            record["image_readable"] = _readable(record["image"])
        line = json.dumps(record, ensure_ascii=True).encode("ascii")
    handle.write(line + b"\n")
    handle.flush()  # in the kernel now: a killed process loses nothing


class _NoBar:
    """The progress bar of a run without one (``progress=False``): tqdm's first bar, even disabled,
    builds a multiprocessing lock, which cost a short run up to a fifth of a second on a busy machine."""

    def update(self, n: int = 1) -> None:
        """Nothing to show."""

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


class _open_results:
    """The results file opened for appending and locked for this run: a second run on the same file
    (another notebook, another kernel, the same kernel) is refused instead of asking every question
    again. The lock is the kernel's (``flock``), so a killed run leaves no stale lock behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    def __enter__(self) -> Any:
        __tracebackhide__ = True
        where = _readable(str(self.path))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise OutputError(_("The folder {folder} for the results cannot be made: something that is not a folder "
                                "(a file, or a link to nowhere) has that name. Pass a results file in another "
                                "folder.").format(folder=_readable(str(self.path.parent)))) from None
        except OSError as exc:
            if isinstance(exc, PermissionError):
                raise OutputError(_("labkit may not write {path}: the folder or the file is read-only. Pass a "
                                    "results file in a folder you can write (e.g. your home folder), or fix the "
                                    "permissions (chmod u+w).").format(path=where)) from None
            raise OutputError(_("The folder {folder} for the results cannot be made: {reason}. Pass a results file "
                                "in a folder that exists or can be made (e.g. 'answers.jsonl' in the current "
                                "folder).").format(folder=_readable(str(self.path.parent)),
                                                   reason=exc.strerror or exc.__class__.__name__)) from None
        try:
            self.handle = self.path.open("ab+")
        except PermissionError:
            raise OutputError(_("labkit may not write {path}: the folder or the file is read-only. Pass a results "
                                "file in a folder you can write (e.g. your home folder), or fix the permissions "
                                "(chmod u+w).").format(path=where)) from None
        except IsADirectoryError:
            raise OutputError(_("{path} is a folder: pass a file name for the results, e.g. answers.jsonl.").format(
                path=where)) from None
        except OSError as exc:
            raise OutputError(_("labkit cannot open {path} for the results: {reason}. Pass another results file, "
                                "e.g. answers.jsonl in the current folder.").format(
                                path=where, reason=exc.strerror or exc.__class__.__name__)) from None
        if not stat.S_ISREG(os.fstat(self.handle.fileno()).st_mode):  # a device or a pipe: reading would not end
            self.handle.close()
            raise OutputError(_("{path} is not a regular file (a device, a pipe or a socket): pass a file name for the "
                                "results, e.g. answers.jsonl.").format(path=where))
        if fcntl is not None:
            try:
                fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.handle.close()
                raise OutputError(_("Another run is writing to {path} right now (in this or another notebook or "
                                    "terminal). Wait for it to finish or stop it, then run again; or pass another "
                                    "results file.").format(path=where)) from None
        return self.handle

    def __exit__(self, kind: object, *exc: object) -> None:
        __tracebackhide__ = True
        try:
            self.handle.close()  # closing releases the lock
        except OSError as error:  # the last buffered bytes could not be written (a full disk)
            if kind is None:
                raise _write_failed(self.path, error) from None
            # an error is already on its way out (the same full disk, said with the path): keep it


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
    :func:`labkit.stream_chat` (``max_tokens``, ``temperature`` …); ``deadline=`` (or
    ``LABKIT_MAX_SECONDS``) bounds each item's answer, and an item past it is recorded as failed
    with the text that had arrived.

    Example:
        >>> result = run_batch(items_from_folder("images", "Describe the image"), "answers.jsonl")  # doctest: +SKIP
        >>> print(result.summary())                                                                 # doctest: +SKIP
    """
    __tracebackhide__ = True
    items = list(items)
    duplicates = sorted(i for i, n in Counter(str(item.id) for item in items).items() if n > 1)
    if duplicates:
        raise UsageError(_("Item ids must be unique; repeated: {ids}. Give each item its own id.").format(
            ids=", ".join(_readable(d) for d in duplicates[:5])))
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(_("concurrency={n} must be a whole number, at least 1 (8–16 suits the course "
                           "backend).").format(n=repr(concurrency)))
    path = Path(out)
    settings = settings or load_settings()
    client = backend.client(settings)
    with _open_results(path) as handle:
        done = load_results(path)  # read under the lock: no other run appends meanwhile

        def finished(item: BatchItem) -> bool:
            record = done.get(str(item.id))
            return record is not None and (record.get("status") == "ok" or not retry_failed)

        todo = [item for item in items if not finished(item)]
        result = BatchResult(path, skipped=len(items) - len(todo))
        stop = threading.Event()
        started = time.perf_counter()
        bar: Any = (tqdm(total=len(todo), desc=_("questions"), unit=_("q"),
                         bar_format=_("{desc}: {percentage:3.0f}%|{bar}{r_bar}"))  # "问题：", not "问题:"
                    if progress else _NoBar())
        handle.seek(0, os.SEEK_END)
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                try:
                    handle.write(b"\n")  # a crash cut the last line: start a fresh one
                    handle.flush()
                except OSError as exc:
                    bar.close()
                    raise _write_failed(path, exc) from None
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="labkit-batch")
        pending: set[Future[dict[str, Any]]] = {pool.submit(_ask, item, settings, client, options, stop)
                                                for item in todo}
        synced = time.monotonic()
        try:
            while pending:
                if time.monotonic() - synced >= SYNC_EVERY:
                    _sync(handle, path)
                    synced = time.monotonic()
                completed, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in completed:
                    record = future.result()
                    try:
                        _append(handle, record)
                    except OSError as exc:  # a full disk: stop asking, say which file and what to do
                        stop.set()
                        raise _write_failed(path, exc) from None
                    done[record["id"]] = record
                    if record["status"] == "ok":
                        result.answered += 1
                    else:
                        result.failed += 1
                    bar.update(1)
                    bar.set_postfix_str(_("failed: {n}").format(n=result.failed), refresh=False)
            _sync(handle, path)
        except KeyboardInterrupt:
            result.interrupted = True
            stop.set()  # running requests close their streams; their answers are not recorded
            _sync(handle, path)
        finally:
            pool.shutdown(wait=not (result.interrupted or stop.is_set()), cancel_futures=True)
            bar.close()
    result.records = {str(item.id): done[str(item.id)] for item in items if str(item.id) in done}
    result.wall_time = time.perf_counter() - started
    if progress:
        print(result.summary())
    return result
