"""The grading child: run one submitted notebook, then (only then) receive and run the tests.

This module is the program that runs *inside* the sandbox (``python -m labkit.grading.execute``), as
the unprivileged grading user where the sandbox can arrange one. It never sees a test before the
student's code has finished:

1. it starts its own practice server on loopback and points ``LABKIT_BASE_URL`` at it;
2. it runs the notebook's code cells in order in one IPython shell, each under a time limit, with
   printed output capped; a cell that raises or runs out of time is recorded and the next one runs;
3. it reports "cells done" on the results channel and reads the tests (public and hidden, otter's
   OK format) from its standard input, which the grader writes only now;
4. it runs them with otter-grader's own test classes (``OKTestFile.run`` on the notebook's global
   namespace; ``GradingResults`` for the totals) and writes the results back, tagged with the nonce
   that came with the tests.

Messages on the results channel are JSON lines. Nothing here prints to a person: the grader turns
the results into the gradebook and the feedback.

Example:
    >>> cells = [("code", "x = 1 + 1"), ("code", "raise ValueError('no')"), ("code", "y = x * 2")]
    >>> shell, report = run_cells(cells, cell_timeout=5.0, output_limit=1000)  # doctest: +SKIP
    >>> shell.user_ns["y"], report[1]["error"]                                 # doctest: +SKIP
    (4, 'ValueError: no')
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import sys
import types
from typing import Any

__all__ = ["SKIPPED_CELL", "CellTimeout", "CappedWriter", "run_cells", "run_tests", "main"]

# The cells otter assign adds to a student's notebook (they need the notebook's own file name and
# run the public tests, which the grader runs anyway): skipped when grading.
SKIPPED_CELL = re.compile(r"\A\s*(?:# Initialize Otter\s*)?(?:import otter\s*grader\s*=\s*otter\.Notebook\([^)]*\)"
                          r"|grader\.check(?:_all)?\([^)]*\)|grader\.export\([^)]*\))\s*\Z")


class CellTimeout(BaseException):
    """Raised inside a cell that ran past its time limit (a BaseException, so `except Exception`
    in student code does not swallow it)."""


class CappedWriter(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters and counts the rest.

    Example:
        >>> w = CappedWriter(5)
        >>> _ = w.write("hello world")
        >>> w.getvalue(), w.dropped
        ('hello', 6)
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:  # type: ignore[override]
        text = str(text)
        room = max(0, self.limit - self.kept)
        if room:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.dropped += max(0, len(text) - room)
        return len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


def _on_alarm(signum: int, frame: object) -> None:
    raise CellTimeout()


def _end_strays() -> None:
    """Inside the sandbox's PID namespace (where this process is its init, PID 1), processes a cell
    forked do not outlive the cell: they are killed and reaped. Outside one, nothing is touched."""
    if os.getpid() != 1:
        return
    try:
        os.kill(-1, signal.SIGKILL)  # as PID 1 of the namespace: every other process in it
    except (ProcessLookupError, PermissionError):
        pass
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_cells(
    cells: list[tuple[str, str]], *, cell_timeout: float, output_limit: int
) -> tuple[Any, list[dict[str, Any]]]:
    """Run the code cells in one IPython shell; return the shell and one report per code cell.

    Each report has ``index`` (the cell's position in the notebook), ``error`` (``None``, or the
    exception's type and message), ``timeout`` and ``skipped``.
    """
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.colors = "nocolor" if hasattr(shell, "colors") else None
    out = CappedWriter(output_limit)
    reports: list[dict[str, Any]] = []
    signal.signal(signal.SIGALRM, _on_alarm)
    real_stdout, real_stderr = sys.stdout, sys.stderr
    for index, (kind, source) in enumerate(cells):
        if kind != "code" or not source.strip():
            continue
        report: dict[str, Any] = {"index": index, "error": None, "timeout": False, "skipped": False}
        reports.append(report)
        if SKIPPED_CELL.match(source):
            report["skipped"] = True
            continue
        sys.stdout = sys.stderr = out
        signal.setitimer(signal.ITIMER_REAL, cell_timeout)
        try:
            result = shell.run_cell(source, store_history=True, silent=False)
        except CellTimeout:  # raised outside the user's code (IPython's own machinery)
            result = None
            report.update(timeout=True, error="CellTimeout")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.stdout, sys.stderr = real_stdout, real_stderr
            _end_strays()
        if result is not None:
            exc = result.error_before_exec or result.error_in_exec
            if isinstance(exc, CellTimeout):
                report.update(timeout=True, error="CellTimeout")
            elif exc is not None:
                report["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    reports.append({"output_chars": out.kept + out.dropped, "output_dropped": out.dropped})
    return shell, reports


def _otter_test_classes() -> tuple[Any, Any]:
    """otter-grader's OKTestFile and GradingResults, without importing otter's heavy top level
    (nbconvert, exporters …) when the notebook did not import otter itself."""
    if "otter" not in sys.modules:
        spec = importlib.util.find_spec("otter")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("otter-grader is not installed: pip install 'labkit[grade]'")
        package = types.ModuleType("otter")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["otter"] = package
    from otter.test_files import GradingResults
    from otter.test_files.ok_test import OKTestFile

    return OKTestFile, GradingResults


def run_tests(specs: dict[str, Any], namespace: dict[str, Any], *, test_timeout: float) -> dict[str, Any]:
    """Run otter OK-format test specs against ``namespace``; return otter's results without the
    test bodies (the grader keeps those)."""
    OKTestFile, GradingResults = _otter_test_classes()
    files = []
    for name, spec in specs.items():
        test_file = OKTestFile.from_spec(spec, path=name)
        signal.setitimer(signal.ITIMER_REAL, test_timeout)
        try:
            test_file.run(namespace)
        except CellTimeout:
            test_file.test_case_results = []
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        files.append(test_file)
    results = GradingResults(files).to_dict()
    for entry in results.values():
        for case in entry.get("test_cases", []):
            case.pop("body", None)
        for outcome in entry.get("test_case_results", []):
            outcome.get("test_case", {}).pop("body", None)
    return results


def _send(channel: Any, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, ensure_ascii=False) + "\n")
    channel.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m labkit.grading.execute RESULTS_FD NOTEBOOK CELL_TIMEOUT OUTPUT_LIMIT``."""
    argv = sys.argv[1:] if argv is None else argv
    results_fd, notebook, cell_timeout, output_limit = int(argv[0]), argv[1], float(argv[2]), int(argv[3])
    channel = os.fdopen(results_fd, "w", encoding="utf-8", closefd=True)
    tests_in = sys.stdin
    sys.stdin = io.StringIO("")  # input() in a cell gets end-of-file, not the tests

    from labkit.practice import PracticeConfig, PracticeServer

    server = PracticeServer(PracticeConfig.from_env(fast=True)).start()
    os.environ["LABKIT_BASE_URL"] = server.base_url
    with open(notebook, encoding="utf-8") as handle:
        nb = json.load(handle)
    cells = [(c.get("cell_type", ""), "".join(c.get("source", ""))) for c in nb.get("cells", [])]
    shell, reports = run_cells(cells, cell_timeout=cell_timeout, output_limit=output_limit)
    _send(channel, {"event": "cells", "cells": reports})
    request = json.loads(tests_in.readline() or "{}")
    results = run_tests(request.get("tests", {}), shell.user_ns, test_timeout=cell_timeout)
    _send(channel, {"event": "results", "nonce": request.get("nonce"), "results": results})
    channel.close()
    server.stop(timeout=1.0)
    os._exit(0)  # student threads must not keep the process alive


if __name__ == "__main__":
    sys.exit(main())
