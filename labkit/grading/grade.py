"""Grading a folder of submitted notebooks: one sandboxed child per submission, a durable gradebook.

For each entry of ``SUBMISSIONS`` (``<student>.ipynb`` or ``<student>/<any>.ipynb``) not already in
the gradebook:

1. the notebook's JSON is read here; anything that cannot be graded (not a notebook, a ``.py``, two
   notebooks, a link, broken JSON) gets an ``invalid`` row with the reason;
2. a copy goes into a fresh temporary folder, and :mod:`labkit.grading.execute` runs it inside
   :mod:`labkit.grading.jail` (own namespaces, grading users, a control group, limits), with an
   environment holding no ``LABKIT_*``/``OPENAI_*`` setting of this machine: the sandbox starts its own
   practice server, so grading never reaches the class's real backend;
3. the student's cells run in one process; once they have finished, the tests (public and hidden,
   from ``otter assign``'s autograder notebook) go to the sandbox's supervisor, which hands them to a
   test process that never runs the student's code (otter's test classes score them there); the
   results come back on a private pipe, with a nonce;
4. a wall-clock limit kills the whole sandbox; a run that dies, hangs or floods is recorded with its
   reason and the next submission runs;
5. the row is appended to the CSV and fsynced, and the student's feedback file is written in the
   students' language.

Example:
    >>> summary = grade_folder("multimodal-request", "submissions", "grades.csv")  # doctest: +SKIP
    >>> print(summary.report())                                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..i18n import LANGUAGES, _, language
from . import cgroup, jail
from .assignments import ASSIGNMENTS_DIR, GradingError, build, master_path
from .confine import undumpable
from .feedback import N_, Note, cell_error, failure_line, render
from .gradebook import Gradebook
from .roster import Roster, write_export

__all__ = ["Submission", "Outcome", "GradeSummary", "clean_id", "find_submissions", "grade_folder"]

_SAFE_ID = re.compile(r"[^\w.\-]+")
_CHANNEL_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Submission:
    """One entry of the submissions folder: ``student`` (the id, cleaned of bidi and control
    characters), ``path`` (the notebook), ``problem`` when it cannot be graded (not a notebook, two
    notebooks, a link …) and ``file``, the entry's original name."""

    student: str
    path: Path | None
    problem: str = ""
    file: str = ""


_INVISIBLE = re.compile("[\x00-\x1f\x7f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_id(name: str) -> str:
    """A student id from a file name: bidi overrides and control characters removed (a right-to-left
    override would make ``fdp.exe`` read as ``exe.pdf`` in a spreadsheet).

    Example:
        >>> clean_id("王芳"), clean_id("ab\u202edc")
        ('王芳', 'abdc')
    """
    return _INVISIBLE.sub("", name).strip() or "student"


def find_submissions(folder: str | os.PathLike[str]) -> list[Submission]:
    """``<student>.ipynb`` files and ``<student>/<any>.ipynb`` folders in ``folder``, by student id.

    Example:
        >>> find_submissions("no-such-folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        labkit.grading.assignments.GradingError: No submissions folder at 'no-such-folder'...
    """
    root = Path(folder)
    if not root.is_dir():
        raise GradingError(_("No submissions folder at '{path}': give the folder holding <student>.ipynb files "
                             "or <student>/ folders.").format(path=str(folder)))
    found: dict[str, Submission] = {}
    top = root.resolve()
    entries = [e for e in sorted(root.iterdir()) if not e.name.startswith(".")]
    notebooks_here = {clean_id(e.stem) for e in entries if e.suffix == ".ipynb" and not e.is_symlink()}

    def add(student: str, path: Path | None, problem: str, entry: Path) -> None:
        student = clean_id(student)
        if student in found:  # e.g. ana.ipynb and ana.py: each keeps a row of its own
            student = clean_id(entry.name)
        found[student] = Submission(student, path, problem, entry.name + ("/" if entry.is_dir() else ""))

    for entry in entries:
        if entry.is_symlink():  # a link could name the master notebook, another student's work or /dev/zero
            add(entry.stem if entry.suffix == ".ipynb" else entry.name, None,
                Note(N_("a symbolic link, not a submitted file: submit the notebook itself")), entry)
        elif entry.is_file() and entry.suffix == ".ipynb":
            add(entry.stem, entry, "", entry)
        elif entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                               and not _linked(p, top))
            if len(notebooks) == 1:
                add(entry.name, notebooks[0], "", entry)
            elif notebooks:
                names = ", ".join(p.name for p in notebooks[:5])
                add(entry.name, None, Note(N_("{count} notebooks in the folder ({names}): submit exactly one"),
                                           count=len(notebooks), names=names), entry)
            else:
                add(entry.name, None, Note(N_("a folder with no notebook in it: submit the .ipynb file")), entry)
        else:
            stem = entry.stem if clean_id(entry.stem) not in notebooks_here else entry.name
            add(stem, None, Note(N_("not a notebook ({name}): only .ipynb files can be graded; submit the notebook "
                                 "itself"), name=entry.name), entry)
    return list(found.values())


@dataclass
class Outcome:
    """What grading one submission gave."""

    student: str
    status: str
    reason: str = ""
    file: str = ""
    detail: Any = None
    scores: dict[str, float] = field(default_factory=dict)
    cases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cell_errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class GradeSummary:
    """A grading run: the gradebook's path, the outcomes graded now, and the rows skipped."""

    gradebook: Path
    questions: dict[str, float]
    rows: dict[str, dict[str, str]]
    graded: list[Outcome] = field(default_factory=list)
    skipped: int = 0
    wall_time: float = 0.0
    interrupted: bool = False
    isolation: str = "process"
    export: Path | None = None
    unmatched: list[str] = field(default_factory=list)

    def pass_rates(self) -> dict[str, tuple[float, float]]:
        """For each question, over every row of the gradebook: (share with full marks, mean share of the points).

        Example:
            >>> s = GradeSummary(Path("g.csv"), {"q1": 2.0}, {"a": {"q1": "2"}, "b": {"q1": "1"}})
            >>> s.pass_rates()
            {'q1': (0.5, 0.75)}
        """
        rates: dict[str, tuple[float, float]] = {}
        for question, points in self.questions.items():
            values = [float(row.get(question) or 0) for row in self.rows.values()]
            if not values or not points:
                rates[question] = (0.0, 0.0)
                continue
            rates[question] = (sum(v >= points for v in values) / len(values),
                               sum(values) / (points * len(values)))
        return rates

    def report(self) -> str:
        """The summary a TA reads at the end of a run."""
        done = _("{graded} graded now, {skipped} already in {path}, in {seconds:.1f} s (isolation: {isolation})")
        lines = [done.format(
            graded=len(self.graded), skipped=self.skipped, path=str(self.gradebook), seconds=self.wall_time,
            isolation=self.isolation)]
        if self.interrupted:
            lines.append(_("Interrupted: run the same command again to grade the rest."))
        lines.append(_("question   full marks   mean score"))
        for question, (full, mean) in self.pass_rates().items():
            lines.append(f"{question:<10} {full:>10.0%}   {mean:>10.0%}")
        statuses: dict[str, int] = {}
        for row in self.rows.values():
            statuses[row.get("status", "")] = statuses.get(row.get("status", ""), 0) + 1
        lines.append(_("status: {counts}").format(counts=", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))))
        if self.export is not None:
            lines.append(_("For the LMS: {path}").format(path=str(self.export)))
        if self.unmatched:
            lines.append(_("Not in the roster ({count}): {ids}. Rename these submissions to the roster's ids, or add "
                           "the students to the LMS.").format(count=len(self.unmatched), ids=", ".join(self.unmatched)))
        return "\n".join(lines)


def _child_env() -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1",
           "LABKIT_PRACTICE_FAST": "1", "LABKIT_PRACTICE_SHARED": "0", "MPLBACKEND": "Agg", "LABKIT_LANG": language()}
    return env  # nothing of this machine's LABKIT_*/OPENAI_* settings: grading never uses the real backend


_MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024


def _linked(path: Path, top: Path) -> bool:
    """Whether ``path`` is, or goes through, a symbolic link, or leads outside ``top``."""
    current = path
    while current.resolve() != top and current.parent != current:
        if current.is_symlink():
            return True
        current = current.parent
    return top not in path.resolve().parents


def _read_bytes(path: Path) -> bytes:
    """A submitted file's bytes: a regular file (never a link or a device), at most 50 MB."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, _("not a regular file"))
        if info.st_size > _MAX_NOTEBOOK_BYTES:
            raise OSError(0, _("larger than 50 MB"))
        return f.read(_MAX_NOTEBOOK_BYTES + 1)


def _read_notebook(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, Note(N_("not a notebook: broken JSON ({error})"), error=str(exc)[:120])
    except OSError as exc:
        return None, Note(N_("cannot read the file: {error}"), error=str(exc.strerror or exc))
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        return None, Note(N_("not a notebook: no list of cells"))
    return data, ""


class _Grader:
    """Runs submissions in sandboxed children (shared by the worker threads)."""

    def __init__(self, name: str, tests: dict[str, Any], limits: jail.Limits, hide_dirs: list[str],
                 hide_files: list[str], scratch: Path) -> None:
        self.name = name
        self.tests = tests
        self.limits = limits
        self.hide_dirs = hide_dirs
        self.hide_files = hide_files
        self.scratch = scratch
        self.running: dict[int, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        self.stopping = False
        self.root = os.geteuid() == 0  # as root, submissions run as grading users (with or without namespaces)
        self.slots = list(range(64))

    def kill_all(self) -> None:
        self.stopping = True
        with self.lock:
            for proc in list(self.running.values()):
                _kill(proc)

    def grade(self, submission: Submission) -> Outcome:
        started = time.perf_counter()
        outcome = self._grade(submission)
        outcome.file = submission.file
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _grade(self, submission: Submission) -> Outcome:
        if submission.path is None:
            return Outcome(submission.student, "invalid", submission.problem)
        nb, problem = _read_notebook(submission.path)
        if nb is None:
            return Outcome(submission.student, "invalid", problem)
        workdir = Path(tempfile.mkdtemp(prefix="sub-", dir=self.scratch))
        try:
            notebook = workdir / f"{self.name}.ipynb"
            notebook.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
            if self.root:
                workdir.chmod(0o755)
            with self.lock:
                slot = self.slots.pop(0)
            try:
                return self._run(submission.student, workdir, notebook.name, nb, slot)
            finally:
                with self.lock:
                    self.slots.append(slot)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, student: str, workdir: Path, notebook: str, nb: dict[str, Any], slot: int) -> Outcome:
        uid = jail.grading_uid(slot) if self.root else None
        if uid is not None and jail.isolation() == "process":  # no namespaces: the grading users work here
            for path in (workdir, workdir / notebook):
                os.chown(path, uid, uid)
            workdir.chmod(0o2770)
        config = jail.JailConfig(str(workdir), self.hide_dirs, self.hide_files, uid, self.limits, _needed_paths())
        read_end, write_end = os.pipe()
        inside = json.dumps({"uid": uid, "limits": asdict(self.limits), "roots": _needed_paths()})
        child = [sys.executable, "-m", "labkit.grading.execute", "supervise", str(write_end), notebook,
                 str(self.limits.cell), str(self.limits.output_chars), inside]
        log_path = workdir.parent / f"{workdir.name}.log"
        group = cgroup.create(workdir.name, processes=self.limits.processes + 64,
                              memory_mb=self.limits.memory_mb + 1024) if self.root else None
        command = jail.command(config, child)
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(group.wrap(command) if group else command, stdin=subprocess.PIPE, stdout=log,
                                        stderr=subprocess.STDOUT, env=_child_env(), start_new_session=True,
                                        pass_fds=(write_end,))
            finally:
                os.close(write_end)
        with self.lock:
            self.running[proc.pid] = proc
        try:
            return self._talk(student, proc, read_end, nb, log_path)
        finally:
            _kill(proc)
            if group is not None:
                group.remove()
            with self.lock:
                self.running.pop(proc.pid, None)
            os.close(read_end)
            log_path.unlink(missing_ok=True)

    def _talk(self, student: str, proc: subprocess.Popen[bytes], channel: int, nb: dict[str, Any],
              log_path: Path) -> Outcome:
        nonce = secrets.token_hex(16)
        deadline = time.monotonic() + self.limits.wall
        buffer = b""
        cells: list[dict[str, Any]] | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stopping:
                _kill(proc)
                reason = Note(N_("ran past the time limit of {seconds:g} s (killed)"), seconds=self.limits.wall)
                return self._timed_out(student, cells, nb, reason)
            ready, _w, _x = select.select([channel], [], [], min(remaining, 0.5))
            if not ready:
                continue
            chunk = os.read(channel, 65536)
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > _CHANNEL_LIMIT:
                _kill(proc)
                return Outcome(student, "crashed", Note(N_("flooded the grader's results channel (killed)")))
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    message = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if not isinstance(message, dict):
                    continue
                if message.get("event") == "cells" and cells is None:
                    cells = list(message.get("cells") or [])
                    request = json.dumps({"nonce": nonce, "tests": self.tests}) + "\n"
                    try:
                        assert proc.stdin is not None
                        proc.stdin.write(request.encode("utf-8"))
                        proc.stdin.close()
                    except (BrokenPipeError, OSError):
                        pass
                elif message.get("event") == "results" and message.get("nonce") == nonce and cells is not None:
                    return self._scored(student, cells, nb, message.get("results") or {})
        proc.wait(timeout=10)
        return Outcome(student, "crashed", _describe_death(proc.returncode, log_path, cells))

    def _timed_out(self, student: str, cells: list[dict[str, Any]] | None, nb: dict[str, Any],
                   reason: str) -> Outcome:
        outcome = Outcome(student, "timeout", reason)
        if cells is not None:
            outcome.cell_errors = _cell_errors(cells, nb)
        return outcome

    def _scored(self, student: str, cells: list[dict[str, Any]], nb: dict[str, Any],
                results: dict[str, Any]) -> Outcome:
        outcome = Outcome(student, "ok")
        outcome.cell_errors = _cell_errors(cells, nb)
        for question in self.tests:
            entry = results.get(question) or {}
            try:
                outcome.scores[question] = float(entry.get("score", 0.0))
            except (TypeError, ValueError):
                outcome.scores[question] = 0.0
            outcome.scores[question] = max(0.0, min(outcome.scores[question], _possible(self.tests[question])))
            outcome.cases[question] = _cases(self.tests[question], entry)
        flood = next((c for c in cells if "output_chars" in c), {})
        notes = []
        if outcome.cell_errors:
            outcome.status = "errors"
            notes.append(Note(N_("{count} cell(s) raised or ran out of time"), count=len(outcome.cell_errors)))
        if flood.get("output_dropped"):
            notes.append(Note(N_("printed {chars} characters; only the first {kept} were kept"),
                              chars=flood.get("output_chars"), kept=self.limits.output_chars))
        outcome.reason = "; ".join(notes)
        outcome.detail = notes
        return outcome


_built: dict[tuple[str, int, int], tuple[str, dict[str, Any]]] = {}


def _tests_of(master: Path, scratch: Path) -> tuple[str, dict[str, Any]]:
    """The assignment's name and all its tests, from ``otter assign`` (once per master file version
    in this process). Nothing of it stays on disk: the tests live only in this process's memory."""
    info = master.stat()
    key = (str(master), info.st_mtime_ns, info.st_size)
    if key not in _built:
        built = build(master, scratch / "dist")
        _built[key] = (built.name, built.tests())
        shutil.rmtree(scratch / "dist")
    return _built[key]


def _needed_paths() -> list[str]:
    """What the grading child must be able to read: the Python installation, the venv, labkit."""
    import site

    paths = {sys.base_prefix, sys.prefix, os.path.realpath(sys.executable),
             str(Path(__file__).resolve().parent.parent.parent)}
    paths.update(p for p in site.getsitepackages() if os.path.isdir(p))
    return sorted(paths)


def _possible(spec: dict[str, Any]) -> float:
    cases = spec.get("suites", [{}])[0].get("cases", [])
    points = [c.get("points") for c in cases]
    if all(isinstance(p, (int, float)) for p in points):
        return float(sum(points))  # type: ignore[arg-type]
    return float(spec.get("points") or 0)


def _cases(spec: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Each test case of a question as the feedback shows it: hidden tests only by their hint."""
    outcomes = entry.get("test_case_results") or []
    rows = []
    for index, case in enumerate(spec.get("suites", [{}])[0].get("cases", [])):
        result = outcomes[index] if index < len(outcomes) and isinstance(outcomes[index], dict) else {}
        passed = bool(result.get("passed"))
        hidden = bool(case.get("hidden"))
        if hidden:
            hint = case.get("failure_message") or ""
        else:
            hint = failure_line(str(result.get("message", ""))) if result else ""
        rows.append({"hidden": hidden, "passed": passed, "hint": hint, "points": case.get("points") or 0,
                     "not_run": not result})
    return rows


def _cell_errors(cells: list[dict[str, Any]], nb: dict[str, Any]) -> list[dict[str, Any]]:
    """The reports of the cells that raised or ran out of time (told in a language by :func:`cell_error`)."""
    return [{"index": int(r["index"]), "timeout": bool(r.get("timeout")), "error": str(r.get("error") or "")[:400]}
            for r in cells if isinstance(r, dict) and isinstance(r.get("index"), int) and not r.get("skipped")
            and (r.get("timeout") or r.get("error"))]


def _describe_death(returncode: int | None, log_path: Path, cells: list[dict[str, Any]] | None) -> str:
    tail = ""
    try:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    except OSError:
        pass
    if "MemoryError" in tail or returncode in (-signal.SIGKILL, -signal.SIGSEGV):
        what = Note(N_("out of memory or killed"))
    elif returncode is not None and returncode < 0:
        what = Note(N_("killed by signal {signal}"), signal=-returncode)
    else:
        what = Note(N_("exited with status {code}"), code=returncode)
    where = Note(N_("after the notebook's cells")) if cells is not None else Note(N_("while running the notebook"))
    # what the processes printed is shown only from before any test ran: afterwards the submission
    # has seen test arguments, and its output must not carry them into the feedback
    last = [line for line in tail.strip().splitlines() if line.strip()][-1:] if tail.strip() and cells is None else []
    return Note(N_("the grading process ended {where}: {what}{detail}"),
                where=where, what=what, detail=f" ({last[0][:160]})" if last else "")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _feedback_name(student: str) -> str:
    """A file name for a student's feedback; ids that had to be changed get a short hash of their own, so
    two students can never share a feedback file.

    Example:
        >>> _feedback_name("s001"), _feedback_name("a b") != _feedback_name("a_b")
        ('s001.md', True)
    """
    safe = _SAFE_ID.sub("_", student).strip("._") or "student"
    if safe != student:
        safe += "-" + hashlib.sha1(student.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return safe + ".md"


def _row(outcome: Outcome, questions: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {"student": outcome.student, "file": outcome.file, "status": outcome.status,
                           "reason": outcome.reason}
    for question in questions:
        row[question] = f"{outcome.scores.get(question, 0.0):g}"
    row["total"] = f"{sum(outcome.scores.get(q, 0.0) for q in questions):g}"
    row["possible"] = f"{sum(questions.values()):g}"
    return row


def _holds_needed(folder: Path) -> bool:
    hidden = folder.resolve()
    return any(path == hidden or hidden in path.parents for path in _needed_roots())


def _needed_roots() -> list[Path]:
    return [Path(sys.prefix).resolve(), Path(__file__).resolve().parent.parent]


def _repository() -> tuple[list[str], list[str]]:
    """The git metadata of the checkout labkit runs from (its history holds the master notebooks):
    folders and files to hide from submissions."""
    project = ASSIGNMENTS_DIR.parent.parent
    dotgit = project / ".git"
    if dotgit.is_dir():
        return [str(dotgit)], []
    if not dotgit.is_file():
        return [], []
    dirs: list[str] = []
    match = re.match(r"gitdir:\s*(.+)", dotgit.read_text(encoding="utf-8", errors="replace").strip())
    if match:
        gitdir = (project / match.group(1).strip()).resolve()
        dirs.append(str(gitdir))
        common = gitdir / "commondir"
        if common.is_file():
            dirs.append(str((gitdir / common.read_text(encoding="utf-8").strip()).resolve()))
    return [d for d in dirs if os.path.isdir(d)], [str(dotgit)]


def _check_paths(hide_dirs: list[str]) -> None:
    needed = _needed_roots()
    for folder in hide_dirs:
        hidden = Path(folder).resolve()
        for path in needed:
            if path == hidden or hidden in path.parents:
                raise GradingError(_("The folder {folder} holds the Python environment the grading uses ({path}): "
                                     "put the submissions and the gradebook in folders of their own.").format(
                    folder=str(hidden), path=str(path)))


def _clean_stale_scratch() -> None:
    """Delete what an earlier run that was killed (``kill -9``) left: its scratch folder (copies of
    submissions) and its control groups. Only folders this code made, of a process that is gone."""
    if os.geteuid() == 0:
        cgroup.clean_stale()
    for folder in Path(tempfile.gettempdir()).glob("labkit-grade-*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.geteuid():
                continue
            pid = int((folder / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def _check_isolation() -> None:
    """Refuse to grade without the sandbox unless the TA asked for process isolation by name, and
    then say, before anything runs, what it does not protect."""
    if jail.isolation() != "process":
        return
    if os.environ.get("LABKIT_GRADE_ISOLATION") != "process":
        raise GradingError(_("This machine cannot build the grading sandbox (neither root nor user namespaces are "
                             "available), so submissions could read your files and keys and reach the network. "
                             "Grade as root or where user namespaces are allowed; to grade anyway with process "
                             "isolation only, set LABKIT_GRADE_ISOLATION=process."))
    if os.geteuid() == 0 and jail._closed_ancestors(_needed_paths()):
        raise GradingError(_("LABKIT_GRADE_ISOLATION=process as root runs each submission as a grading user, but the "
                             "Python environment ({path}) lies in a folder other users cannot enter: install labkit "
                             "where every user can read it (e.g. /opt), or grade without root.").format(
            path=sys.prefix))
    print(_("Warning: LABKIT_GRADE_ISOLATION=process: each submission runs in its own process with a cleaned "
            "environment and limits (as a grading user of its own when you are root), but without namespaces: "
            "it can read every file its user can read, reach the network, see the machine's processes and write "
            "to shared folders such as /tmp and /run/lock. Use it only for submissions you trust."), file=sys.stderr)
    undumpable()


def grade_folder(
    assignment: str | os.PathLike[str],
    submissions: str | os.PathLike[str],
    gradebook: str | os.PathLike[str],
    *,
    feedback_dir: str | os.PathLike[str] | None = None,
    limits: jail.Limits | None = None,
    jobs: int = 1,
    progress: bool = True,
    lang: str = "zh",
    roster: str | os.PathLike[str] | None = None,
    lms_format: str = "plain",
) -> GradeSummary:
    """Grade every submission in ``submissions`` not yet in ``gradebook`` (see the module's docstring).

    Feedback goes to ``feedback_dir`` (default: ``<gradebook stem>-feedback`` beside it), in ``lang``
    (the students' language: ``"zh"`` or ``"en"``). With a ``roster`` (an LMS's CSV export) the grades
    are also written in that LMS's ``lms_format`` (``plain``, ``canvas`` or ``moodle``) to
    ``<gradebook stem>-<format>.csv``, matched by student id.

    Example:
        >>> grade_folder("batch-evaluation", "submissions", "grades.csv", jobs=2)  # doctest: +SKIP
    """
    started = time.perf_counter()
    if lang not in LANGUAGES:
        raise GradingError(_("Unknown feedback language '{lang}': choose one of {langs}.").format(
            lang=lang, langs=", ".join(LANGUAGES)))
    class_list = Roster.load(roster, lms_format) if roster is not None else None
    _check_isolation()
    limits = limits or jail.Limits()
    master = master_path(assignment)
    subs = find_submissions(submissions)
    book_path = Path(gradebook).resolve()
    feedback = Path(feedback_dir) if feedback_dir else book_path.with_name(book_path.stem + "-feedback")
    feedback.mkdir(parents=True, exist_ok=True)
    hide_dirs = [str(ASSIGNMENTS_DIR), str(Path(submissions).resolve()), str(feedback.resolve())]
    _check_paths(hide_dirs[1:])
    if master.parent != ASSIGNMENTS_DIR and not _holds_needed(master.parent):
        hide_dirs.append(str(master.parent))  # a TA's own folder of masters
    repo_dirs, repo_files = _repository()
    hide_dirs += repo_dirs
    _clean_stale_scratch()
    scratch = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    (scratch / "owner.pid").write_text(str(os.getpid()))
    try:
        name, tests = _tests_of(master, scratch)
        questions = {name: _possible(spec) for name, spec in tests.items()}
        work = scratch / "work"
        work.mkdir()
        scratch.chmod(0o711)
        work.chmod(0o711)
        with Gradebook(book_path, list(questions)) as book:
            hide_files = [str(book_path), str(master), *repo_files]
            summary = GradeSummary(book_path, questions, book.rows, isolation=jail.isolation())
            todo = [s for s in subs if s.student not in book.rows]
            summary.skipped = len(subs) - len(todo)
            grader = _Grader(name, tests, limits, hide_dirs, hide_files, work)
            bar = tqdm(total=len(todo), desc=_("grading"), unit=_("notebook"), disable=not progress,
                       bar_format=_("{desc}: {percentage:3.0f}%|{bar}{r_bar}"))
            pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="labkit-grade")
            pending: set[Future[Outcome]] = set()
            queue = list(todo)
            try:
                while queue or pending:
                    while queue and len(pending) < max(1, jobs):
                        pending.add(pool.submit(grader.grade, queue.pop(0)))
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        outcome = future.result()
                        book.add(_row(outcome, questions))
                        (feedback / _feedback_name(outcome.student)).write_text(
                            render(outcome.student, name, outcome.scores, questions,
                                   [cell_error(r, lang) for r in outcome.cell_errors], outcome.status,
                                   outcome.reason if outcome.detail is None else outcome.detail, outcome.cases,
                                   lang), encoding="utf-8")
                        summary.graded.append(outcome)
                        bar.update(1)
            except KeyboardInterrupt:
                summary.interrupted = True
                grader.kill_all()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                bar.close()
            summary.rows = dict(book.rows)
        if class_list is not None:
            summary.export = book_path.with_name(f"{book_path.stem}-{lms_format}.csv")
            summary.unmatched = write_export(class_list, summary.rows, name, list(questions), summary.export)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary.wall_time = time.perf_counter() - started
    return summary
