"""labkit.batch under careless use: names that are not UTF-8, two runs on one file, a read-only
folder, damaged lines in the middle. Real practice server, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from support import IMAGES

import labkit
from labkit.batch import BatchItem, items_from_folder, load_results, run_batch

GBK_NAME = "测试照片".encode("gbk") + b".jpg"  # what unzipping a Windows zip on Linux leaves behind


def test_a_file_name_that_is_not_utf8_is_stored_losslessly_and_resumed(
    configured_fastchat: str, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(IMAGES / "rocket.jpg", os.path.join(os.fsencode(folder), GBK_NAME))
    shutil.copy(IMAGES / "coffee.jpg", folder / "咖啡.jpg")
    items = items_from_folder(folder, "What colour dominates?")
    out = tmp_path / "answers.jsonl"
    first = run_batch(items, out, progress=False, max_tokens=8)
    assert (first.answered, first.failed) == (2, 0)
    records = load_results(out)
    odd = os.fsdecode(GBK_NAME)
    assert records[odd]["status"] == "ok" and records[odd]["id"] == odd  # the exact name comes back
    assert os.fsencode(records[odd]["image"]) == os.fsencode(folder) + b"/" + GBK_NAME
    assert records[odd]["id_readable"] == "\\xb2\\xe2\\xca\\xd4\\xd5\\xd5Ƭ.jpg"  # c6 ac happens to be UTF-8
    assert "咖啡.jpg" in out.read_text("utf-8")  # ordinary names stay readable in the file
    again = run_batch(items, out, progress=False, max_tokens=8)
    assert (again.skipped, again.answered) == (2, 0)


def test_a_second_run_on_the_same_file_is_refused(configured_fastchat: str, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    code = ("import fcntl, sys, time\n"
            f"f = open({str(out)!r}, 'ab'); fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True)\n"
            "sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(labkit.OutputError, match="Another run is writing to .*answers.jsonl right now"):
            run_batch([BatchItem("a", "Hi")], out, progress=False)
    finally:
        holder.communicate("")  # the other run ends: its lock goes with it
    assert run_batch([BatchItem("a", "Hi")], out, progress=False, max_tokens=4).answered == 1


def test_a_killed_run_leaves_no_stale_lock(configured_fastchat: str, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    code = ("import fcntl, os\n"
            f"f = open({str(out)!r}, 'ab'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code], timeout=30)
    assert run_batch([BatchItem("a", "Hi")], out, progress=False, max_tokens=4).answered == 1


def test_a_read_only_folder_gives_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses new files even to root
        out = Path("/sys/labkit-answers.jsonl")
    else:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        out = folder / "answers.jsonl"
    labkit.configure(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(labkit.OutputError) as info:
        run_batch([BatchItem("a", "Hi")], out, progress=False)
    assert f"labkit may not write {out}: the folder or the file is read-only" in str(info.value)
    assert isinstance(info.value, PermissionError) is False and isinstance(info.value, OSError)


def test_damaged_lines_in_the_middle_are_skipped_with_a_warning(configured_fastchat: str, tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    good = [json.dumps({"id": f"q{i}", "status": "ok", "answer": f"answer {i}"}) for i in range(3)]
    damaged = "\n".join([good[0], "<<<<<<< merge conflict", good[1], "\x00\x00\x00", good[2]]) + "\n"
    out.write_text(damaged)
    with pytest.warns(UserWarning, match=r"skipped 2 damaged line\(s\).*line 2, 4"):
        result = run_batch([BatchItem(f"q{i}", "Hi") for i in range(4)], out, progress=False, max_tokens=4)
    assert (result.skipped, result.answered) == (3, 1)
    assert out.read_text().startswith(damaged)  # nothing lost: the file was only appended to
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [load_results(out)[f"q{i}"]["answer"] for i in range(3)] == ["answer 0", "answer 1", "answer 2"]


# --- raw errors become labkit errors naming the file (issue 17 item 6) ------------------------------------

FULL_DISK = r"""
import os, resource, signal, sys
from pathlib import Path
import labkit
from labkit.practice import serve_in_thread

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk fails
out = Path(sys.argv[1])
with serve_in_thread(fast=True) as base:
    labkit.configure(base_url=base)
    items = [labkit.BatchItem(f"q{i}", "Say something long") for i in range(40)]
    resource.setrlimit(resource.RLIMIT_FSIZE, (3000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        labkit.run_batch(items, out, concurrency=2, progress=False, max_tokens=20)
    except labkit.OutputError as exc:
        print("OutputError:", exc)
    except BaseException as exc:
        print("RAW:", type(exc).__name__, exc)
"""


def test_a_results_file_that_cannot_grow_is_an_output_error_naming_it(tmp_path: Path) -> None:
    """A real failed write (the file-size limit of the OS, which fails a write as a full disk does)."""
    out = tmp_path / "answers.jsonl"
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(out)], capture_output=True, text=True, timeout=120)
    printed = run.stdout
    assert printed.startswith("OutputError: Could not write the results to " + str(out)), printed + run.stderr
    assert "File too large" in printed and "run again" in printed
    saved = load_results(out)
    assert saved and all(r["status"] == "ok" for r in saved.values())  # what was written before is intact


def test_a_full_disk_message_names_the_path_and_the_fix() -> None:
    from labkit.batch import _write_failed

    error = _write_failed(Path("/data/answers.jsonl"), OSError(28, os.strerror(28)))
    assert isinstance(error, labkit.OutputError)
    assert "/data/answers.jsonl" in str(error) and "No space left on device" in str(error)
    assert "free some space" in str(error)


@pytest.mark.parametrize("case", ["under a file", "dangling link", "deleted working folder", "a device"])
def test_an_output_path_that_cannot_be_made_is_an_output_error(
        case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    out: str | Path = {"under a file": tmp_path / "afile" / "sub" / "out.jsonl",
                       "dangling link": tmp_path / "gone" / "out.jsonl",
                       "deleted working folder": "sub/out.jsonl",
                       "a device": "/dev/full"}[case]
    if case == "deleted working folder":
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        work.rmdir()
    with pytest.raises(labkit.OutputError) as info:
        run_batch([BatchItem("a", "Hi")], out, progress=False,
                  settings=labkit.Settings(base_url="http://127.0.0.1:9/v1"))
    message = str(info.value)
    assert ("sub" in message or "gone" in message or "/dev/full" in message) and "pass" in message.lower()
