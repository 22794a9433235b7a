"""The grading child: the submission's code and the tests run in two processes that cannot reach each other.

This module is the program that runs *inside* the sandbox (``python -m labkit.grading.execute``). It
has three roles, one per process:

``supervise`` (the sandbox's first process; holds the results channel to the grader)
    imports once what every role needs (labkit and what it imports, IPython), then starts the
    practice server, the *test process* and the *submission process* as children forked from
    itself (no interpreter start, no import again: most of a submission's time went there). It
    forks them before it has read anything from the grader (the tests and the nonce arrive later
    on its stdin) and before any thread runs; each child closes every descriptor but its own pipes
    (stdin becomes ``/dev/null``) and becomes its own user. A submission process started again
    after a case's time limit is a fresh interpreter (by then the supervisor holds the nonce). It relays
    calls between them, enforces each test case's time limit (a case that runs out of time kills
    the submission process, which is started again — its cells run again — for the cases left), and
    forwards the cell reports and the final results to the grader. It never runs the student's code
    and never decodes anything the submission sends.
``cells`` (the submission process: the student's code, as an unprivileged user of its own)
    runs the notebook's code cells in one IPython shell, each under a time limit, with printed output
    capped; then answers calls on the objects its cells defined. It holds no results channel, no
    nonce and never a test: it only ever sees the arguments a test passes to the student's functions.
``tests`` (the test process: never runs the student's code, as another user)
    runs otter-grader's own test classes (``OKTestFile``, ``run_doctest``, ``GradingResults``) on a
    namespace in which the student's functions and objects are *stand-ins*: calling one asks the
    submission process and brings back plain data (numbers, strings, lists, dicts …) decoded with a
    loader that builds nothing else. Comparisons, ``assert`` and doctest's verdicts are computed
    here, so a submission that prints, forges results or monkeypatches the test machinery changes
    nothing but its own answers. Modules and library classes the notebook imported are imported here
    afresh (from the installation, never from the submission's folder). Public cases of every
    question run before any hidden case, so nothing a hidden case passed can come back in a public
    test's message.

Messages between the processes are length-prefixed frames. Nothing here prints to a person: the
grader turns the results into the gradebook and the feedback.

Example:
    >>> cells = [("code", "x = 1 + 1"), ("code", "raise ValueError('no')"), ("code", "y = x * 2")]
    >>> shell, report = run_cells(cells, cell_timeout=5.0, output_limit=1000)  # doctest: +SKIP
    >>> shell.user_ns["y"], report[1]["error"]                                 # doctest: +SKIP
    (4, 'ValueError: no')
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
import time
import types
from typing import Any

from .confine import undumpable

__all__ = ["SKIPPED_CELL", "CellTimeout", "CappedWriter", "run_cells", "main"]

# The cells otter assign adds to a student's notebook (they need the notebook's own file name and
# run the public tests, which the grader runs anyway): skipped when grading.
SKIPPED_CELL = re.compile(r"\A\s*(?:# Initialize Otter\s*)?(?:import otter\s*grader\s*=\s*otter\.Notebook\([^)]*\)"
                          r"|grader\.check(?:_all)?\([^)]*\)|grader\.export\([^)]*\))\s*\Z")

_FRAME_LIMIT = 16 * 1024 * 1024
_PLAIN = (type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)
_HIDDEN_NAMES = re.compile(r"\A(?:_+|_i+|_i\d+|_\d+|_ih|_oh|_dh|In|Out|get_ipython|exit|quit|__\w+__)\Z")


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


# ---------------------------------------------------------------------------------------------- frames


def _send_frame(fd: int, payload: bytes) -> None:
    data = struct.pack(">I", len(payload)) + payload
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None = None) -> bytes | None:
    """One frame, or ``None`` at end of file; ``TimeoutError`` past ``deadline``; ``ValueError`` if too big."""
    head = _read_exact(fd, 4, deadline)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > _FRAME_LIMIT:
        raise ValueError(f"frame of {size} bytes")
    return _read_exact(fd, size, deadline)


# ---------------------------------------------------------------------------------------------- cells


def _on_alarm(signum: int, frame: object) -> None:
    _end_strays()  # first: what the cell forked (a fork bomb) must not slow the traceback and the next cells
    # again in half a second until the cell has ended: an exception raised where Python cannot pass it on
    # (an os.fork() callback, a __del__) is swallowed, and a one-shot timer would leave the cell unbounded
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    raise CellTimeout()


def _end_strays() -> None:
    """Processes a cell forked do not outlive the cell. Where this process has a user of its own in
    the sandbox's PID namespace, one ``kill(-1, SIGKILL)`` ends every other process of that user at
    once (Linux spares the caller; a fork bomb cannot outrun it), then they are reaped. Elsewhere
    nothing is touched."""
    if os.environ.get("LABKIT_GRADE_OWN_PROC") != "1":
        return
    for _round in range(3):
        try:
            os.kill(-1, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    while True:  # every child was killed: wait for each (a zombie still counts against the process limit)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


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
    owner = os.getpid()
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
            if os.getpid() != owner:  # a process the cell forked that came back here: it ends now
                os._exit(0)
            _end_strays()
        if result is not None:
            exc = result.error_before_exec or result.error_in_exec
            if isinstance(exc, CellTimeout):
                report.update(timeout=True, error="CellTimeout")
            elif exc is not None:
                report["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    reports.append({"output_chars": out.kept + out.dropped, "output_dropped": out.dropped})
    return shell, reports


def _is_plain(value: Any, budget: list[int], depth: int = 0) -> bool:
    """Whether ``value`` is built only of the exact builtin data types (no subclass, nothing else)."""
    budget[0] -= 1
    if budget[0] < 0 or depth > 50 or type(value) not in _PLAIN:
        return False
    if type(value) in (list, tuple, set, frozenset):
        return all(_is_plain(v, budget, depth + 1) for v in value)
    if type(value) is dict:
        return all(_is_plain(k, budget, depth + 1) and _is_plain(v, budget, depth + 1) for k, v in value.items())
    return True


def _importable(value: Any) -> tuple[str, str] | None:
    """``(module, qualname)`` when ``value`` is a module, or a class or function of an installed module."""
    if isinstance(value, types.ModuleType):
        return (value.__name__, "")
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str) and module != "__main__" and "<" not in qualname:
            return (module, qualname)
    return None


class _Answering:
    """The submission side of the calls: objects the tests hold stand-ins for, by number."""

    def __init__(self, namespace: dict[str, Any], generation: int) -> None:
        self.ns = namespace
        self.objects: dict[int, Any] = {}
        self.generation = generation

    def encode(self, value: Any) -> bytes:
        if _is_plain(value, [100_000]):
            try:
                return pickle.dumps(("value", value), protocol=4)
            except Exception:  # noqa: BLE001 - e.g. a recursive list: hand out a stand-in instead
                pass
        where = _importable(value)
        if where is not None:
            return pickle.dumps(("import", where[0], where[1]), protocol=4)
        self.objects[id(value)] = value
        cls = type(value)
        own = getattr(cls, "__module__", "") == "__main__" or not isinstance(getattr(cls, "__module__", None), str)
        return pickle.dumps(("ref", self.generation, id(value), cls.__name__, own), protocol=4)

    def resolve(self, ref: tuple[Any, ...]) -> Any:
        kind = ref[0]
        if kind == "name":
            if ref[1] not in self.ns:
                raise NameError(f"name '{ref[1]}' is not defined")
            return self.ns[ref[1]]
        if ref[1] != self.generation or ref[2] not in self.objects:
            raise RuntimeError("this object belongs to an earlier run of the notebook (stopped by a time limit)")
        return self.objects[ref[2]]

    def names(self) -> bytes:
        listing = {}
        for name, value in list(self.ns.items()):
            if not isinstance(name, str) or _HIDDEN_NAMES.match(name):
                continue
            if _is_plain(value, [100_000]):
                listing[name] = ("value", value)
            else:
                where = _importable(value)
                listing[name] = ("import", *where) if where else ("name",)
        try:
            return pickle.dumps(("value", listing), protocol=4)
        except Exception:  # noqa: BLE001
            return pickle.dumps(("value", {n: v for n, v in listing.items() if v[0] != "value"}), protocol=4)

    def answer(self, request: dict[str, Any]) -> bytes:
        op = request["op"]
        if op == "names":
            return self.names()

        class Loader(pickle.Unpickler):
            def persistent_load(inner, pid: Any) -> Any:  # noqa: N805
                return self.resolve(pid)

        try:
            target = self.resolve(request["target"]) if "target" in request else None
            args, kwargs = Loader(io.BytesIO(request.get("args", pickle.dumps(((), {}))))).load()
            if op == "getattr":
                result = getattr(target, request["name"])
            elif op == "call":
                result = target(*args, **kwargs)
            elif op == "method":
                result = getattr(type(target), request["name"])(target, *args, **kwargs)
            elif op == "builtin":
                fn = {"iter": iter, "next": next, "len": len, "bool": bool, "str": str, "repr": repr,
                      "hash": hash}[request["name"]]
                result = fn(target)
            else:
                raise ValueError(f"unknown operation {op!r}")
        except StopIteration:
            return pickle.dumps(("stop",), protocol=4)
        except BaseException as exc:  # noqa: BLE001 - whatever the student's code raised goes back as text
            if isinstance(exc, (CellTimeout, KeyboardInterrupt)):
                raise
            where = _importable(type(exc)) or ("", "")
            return pickle.dumps(("raise", type(exc).__name__[:80], str(exc)[:500], where[0], where[1]), protocol=4)
        return self.encode(result)


def _limit(limits: dict[str, Any]) -> None:
    import resource

    memory = int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(limits["wall"]) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    size = int(limits["file_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("processes"):
        resource.setrlimit(resource.RLIMIT_NPROC, (int(limits["processes"]), int(limits["processes"])))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write fails with EFBIG instead of killing


def _cells_main(argv: list[str]) -> int:
    """``cells TO_FD FROM_FD NOTEBOOK CELL_TIMEOUT OUTPUT_LIMIT GENERATION LIMITS_JSON [confine]``: the
    submission process."""
    to_fd, from_fd, notebook = int(argv[0]), int(argv[1]), argv[2]
    cell_timeout, output_limit, generation = float(argv[3]), int(argv[4]), int(argv[5])
    if argv[7:8] == ["confine"]:
        from .confine import confine

        confine(keep=(to_fd, from_fd))
        os.environ["LABKIT_GRADE_OWN_PROC"] = "1"  # this process is its own PID namespace's first one
    _limit(json.loads(argv[6]))
    os.umask(0o002)
    sys.stdin = io.StringIO("")  # input() in a cell gets end-of-file
    with open(notebook, encoding="utf-8") as handle:
        nb = json.load(handle)
    cells = [(c.get("cell_type", ""), "".join(c.get("source", ""))) for c in nb.get("cells", [])]
    shell, reports = run_cells(cells, cell_timeout=cell_timeout, output_limit=output_limit)
    _send_frame(to_fd, json.dumps({"cells": reports}).encode("utf-8"))
    answering = _Answering(shell.user_ns, generation)
    while True:
        frame = _read_frame(from_fd)
        if frame is None:
            break
        _send_frame(to_fd, answering.answer(pickle.loads(frame)))
    os._exit(0)  # student threads must not keep the process alive


# ---------------------------------------------------------------------------------------------- tests


class SubmissionError(Exception):
    """What the submission's code raised when a test called it (its type name and message)."""


class CaseTimeout(Exception):
    """A test case ran past its time limit (the submission process was stopped)."""


class _Plain(pickle.Unpickler):
    """Decodes what the submission process sends: builtin data types only, nothing that runs code."""

    _ALLOWED = {("builtins", n) for n in ("set", "frozenset", "bytearray", "complex", "list", "dict", "tuple")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return getattr(__import__("builtins"), name)
        raise pickle.UnpicklingError(f"the submission sent a {module}.{name}")


def _decode(payload: bytes) -> tuple[Any, ...]:
    message = _Plain(io.BytesIO(payload)).load()
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise pickle.UnpicklingError("not a reply")
    return message


class _Link:
    """The test side of the calls: asks the supervisor, which asks the submission process."""

    def __init__(self, to_fd: int, from_fd: int, trusted_roots: list[str]) -> None:
        self.to_fd, self.from_fd = to_fd, from_fd
        self.deadline = time.monotonic() + 3600
        self.roots = trusted_roots

    def ask(self, request: dict[str, Any]) -> tuple[Any, ...]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise CaseTimeout("ran past the time limit")
        _send_frame(self.to_fd, pickle.dumps({"op": "ask", "request": request, "timeout": remaining}))
        frame = _read_frame(self.from_fd)
        if frame is None:
            raise SystemExit(3)
        reply = pickle.loads(frame)  # from the supervisor: either its own note or the submission's bytes
        if reply.get("timeout"):
            raise CaseTimeout("ran past the time limit (the notebook was stopped and run again)")
        if reply.get("died"):
            raise SubmissionError(f"the notebook's process ended: {reply['died']}")
        return _decode(reply["payload"])

    def value(self, message: tuple[Any, ...]) -> Any:
        kind = message[0]
        if kind == "value":
            return message[1]
        if kind == "import":
            return self.imported(str(message[1]), str(message[2]))
        if kind == "ref":
            return _Remote(self, ("ref", message[1], message[2]), str(message[3]), bool(message[4]))
        if kind == "stop":
            raise StopIteration
        if kind == "raise":
            raise self.exception(message)
        raise SubmissionError("the notebook's process answered something else")

    def exception(self, message: tuple[Any, ...]) -> BaseException:
        """The exception the submission's code raised, as the same class where that class is a
        builtin or an installed library's (so a test's ``except ValueError`` works), else a
        :class:`SubmissionError`."""
        text = str(message[2])
        try:
            cls = self.imported(str(message[3]), str(message[4])) if len(message) > 4 and message[3] else None
        except Exception:  # noqa: BLE001
            cls = None
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(text)
            except Exception:  # noqa: BLE001 - a class that wants other arguments
                pass
        return SubmissionError(f"{message[1]}: {text}")

    def imported(self, module: str, qualname: str) -> Any:
        spec = importlib.util.find_spec(module)
        origin = os.path.realpath(spec.origin) if spec is not None and spec.origin not in (None, "built-in", "frozen") \
            else ""
        if spec is None or (origin and not any(origin.startswith(r + os.sep) for r in self.roots)):
            raise SubmissionError(f"module {module} is not one of the installed modules")
        value: Any = importlib.import_module(module)
        for part in qualname.split(".") if qualname else []:
            value = getattr(value, part)
        return value

    def call(self, op: str, target: tuple[Any, ...], name: str = "", args: tuple[Any, ...] = (),
             kwargs: dict[str, Any] | None = None) -> Any:
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=4)
        pickler.persistent_id = lambda obj: obj._labkit_ref if type(obj) is _Remote else None  # type: ignore[attr-defined]
        try:
            pickler.dump((args, kwargs or {}))
        except Exception as exc:  # noqa: BLE001
            raise TypeError(f"cannot pass this argument to the notebook's code: {exc}") from None
        return self.value(self.ask({"op": op, "target": target, "name": name, "args": buffer.getvalue()}))


class _Remote:
    """A stand-in for an object that lives in the submission process."""

    __slots__ = ("_labkit_link", "_labkit_ref", "_labkit_type", "_labkit_own")

    def __init__(self, link: _Link, ref: tuple[Any, ...], type_name: str, own: bool) -> None:
        object.__setattr__(self, "_labkit_link", link)
        object.__setattr__(self, "_labkit_ref", ref)
        object.__setattr__(self, "_labkit_type", type_name)
        object.__setattr__(self, "_labkit_own", own)

    def _refuse(self, what: str) -> None:
        if self._labkit_own:
            raise TypeError(f"a {self._labkit_type} (a class the notebook defined) cannot be {what} by the grader: "
                            "return plain values (str, int, list, dict, tuple …)")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_labkit_"):
            raise AttributeError(name)
        return self._labkit_link.call("getattr", self._labkit_ref, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._labkit_link.call("call", self._labkit_ref, "", args, kwargs)

    def _method(self, name: str, *args: Any) -> Any:
        return self._labkit_link.call("method", self._labkit_ref, name, args)

    def __getitem__(self, key: Any) -> Any:
        return self._method("__getitem__", key)

    def __iter__(self) -> Any:
        return self._labkit_link.call("builtin", self._labkit_ref, "iter")

    def __next__(self) -> Any:
        return self._labkit_link.call("builtin", self._labkit_ref, "next")

    def __len__(self) -> int:
        value = self._labkit_link.call("builtin", self._labkit_ref, "len")
        if type(value) is not int:
            raise TypeError("len() of the notebook's object is not an int")
        return value

    def __contains__(self, item: Any) -> bool:
        self._refuse("searched")
        return bool(self._method("__contains__", item) is True)

    def __bool__(self) -> bool:
        self._refuse("tested for truth")
        return self._labkit_link.call("builtin", self._labkit_ref, "bool") is True

    def __eq__(self, other: object) -> bool:
        self._refuse("compared")
        return self._method("__eq__", other) is True

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        value = self._labkit_link.call("builtin", self._labkit_ref, "hash")
        return value if type(value) is int else 0

    def __repr__(self) -> str:
        value = self._labkit_link.call("builtin", self._labkit_ref, "repr")
        return value if type(value) is str else f"<{self._labkit_type}>"

    def __str__(self) -> str:
        value = self._labkit_link.call("builtin", self._labkit_ref, "str")
        return value if type(value) is str else f"<{self._labkit_type}>"

    def __enter__(self) -> Any:
        return self._method("__enter__")

    def __exit__(self, *exc: Any) -> Any:
        return self._method("__exit__", None, None, None)


def _namespace(link: _Link) -> dict[str, Any]:
    """The test namespace: the notebook's plain values copied, its modules and library names imported
    here, everything else a stand-in."""
    listing = link.value(link.ask({"op": "names"}))
    namespace: dict[str, Any] = {}
    if not isinstance(listing, dict):
        return namespace
    for name, entry in listing.items():
        if not isinstance(name, str) or not isinstance(entry, tuple) or not entry:
            continue
        try:
            if entry[0] == "value":
                namespace[name] = entry[1]
            elif entry[0] == "import":
                namespace[name] = link.imported(str(entry[1]), str(entry[2]))
            else:
                namespace[name] = _Remote(link, ("name", name), "object", False)
        except Exception:  # noqa: BLE001 - a name the tests cannot have behaves as not defined
            continue
    return namespace


def _light_otter() -> None:
    """Import otter's test classes without what they never use here: otter's top level (nbconvert,
    exporters …) and the RFC 3987 grammar that jsonschema compiles at import (seconds per process;
    jsonschema does without it)."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    if "otter" not in sys.modules:
        spec = importlib.util.find_spec("otter")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("otter-grader is not installed: pip install 'labkit[grade]'")
        package = types.ModuleType("otter")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["otter"] = package


def _tests_main(argv: list[str]) -> int:
    """``tests TO_FD FROM_FD CASE_TIMEOUT ROOTS_JSON [confine]``: the test process (no student code runs here)."""
    to_fd, from_fd, case_timeout, roots = int(argv[0]), int(argv[1]), float(argv[2]), json.loads(argv[3])
    if argv[4:5] == ["confine"]:  # a user namespace's root: it needs none of the namespace's capabilities
        from .confine import drop_capabilities

        drop_capabilities()
    undumpable()
    os.umask(0o002)
    _light_otter()
    from otter.test_files import GradingResults
    from otter.test_files.abstract_test import TestCaseResult
    from otter.test_files.ok_test import OKTestFile, run_doctest

    frame = _read_frame(from_fd)  # the tests, once the notebook's cells have run
    if frame is None:
        return 3
    specs = pickle.loads(frame)
    link = _Link(to_fd, from_fd, roots)
    namespace = _namespace(link)
    files = [OKTestFile.from_spec(spec, path=name) for name, spec in specs.items()]
    results: dict[tuple[int, int], Any] = {}
    order = [(f, c) for f, tf in enumerate(files) for c, case in enumerate(tf.test_cases) if not case.hidden]
    order += [(f, c) for f, tf in enumerate(files) for c, case in enumerate(tf.test_cases) if case.hidden]
    for f, c in order:
        test_file, case = files[f], files[f].test_cases[c]
        link.deadline = time.monotonic() + case_timeout
        try:
            passed, message = run_doctest(test_file.name + " " + str(c), case.body, namespace)
        except BaseException as exc:  # noqa: BLE001 - the grader's own failure for this case
            passed, message = False, f"{type(exc).__name__}: {exc}"
        results[f, c] = TestCaseResult(test_case=case, passed=passed,
                                       message="✅ Test case passed" if passed else "❌ Test case failed\n" + message)
    for f, test_file in enumerate(files):
        test_file.test_case_results = [results[f, c] for c in range(len(test_file.test_cases))]
    graded = GradingResults(files).to_dict()
    for entry in graded.values():
        for case in entry.get("test_cases", []):
            case.pop("body", None)
        for outcome in entry.get("test_case_results", []):
            outcome.get("test_case", {}).pop("body", None)
    _send_frame(to_fd, pickle.dumps({"op": "results", "results": graded}))
    return 0


# ---------------------------------------------------------------------------------------------- supervisor


def _ahead_of_forks(pid: int) -> None:
    """Give the student's process a higher CPU weight than anything it forks (nice -10, reset to 0
    in its children): a fork bomb in a cell cannot starve the process that must stop it when the
    cell's time is up. Needs root (the sandbox's first process has it); elsewhere nothing changes."""
    try:
        os.sched_setscheduler(pid, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, pid, -10)
    except (OSError, AttributeError):
        pass


class _Forked:
    """A child forked from the supervisor: what of :class:`subprocess.Popen` the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode


def _warm() -> None:
    """Import, once per sandbox, what the forked roles need: labkit (and with it openai, Pillow …),
    the practice server and IPython's shell. Nothing here starts a thread."""
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401

    import labkit
    import labkit.practice  # noqa: F401

    for name in labkit.__all__:  # `import labkit` imports each public name on first use: all of them, now
        getattr(labkit, name)


def _only_fds(keep: tuple[int, ...]) -> None:
    """Close every descriptor but 1, 2 and ``keep``; stdin becomes ``/dev/null`` (the supervisor's
    stdin carries the tests and the nonce)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    last = 2
    for fd in sorted({null, *keep}):
        if fd > last:
            os.closerange(last + 1, fd)
            last = fd
    os.closerange(last + 1, 1 << 20)
    if null not in keep:
        os.close(null)


def _fork(role: Any, keep: tuple[int, ...], user: dict[str, Any], *, session: bool = True) -> _Forked:
    """Run ``role()`` in a child forked from this (single-threaded) process, with only the
    descriptors ``keep``, in a session of its own and as ``user`` (the same ``user``/``group``
    :class:`subprocess.Popen` takes), then end it with ``role``'s exit status."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 70
    try:
        _only_fds(keep)
        if session:
            os.setsid()
        if user:
            os.setgroups([])
            os.setresgid(user["group"], user["group"], user["group"])
            os.setresuid(user["user"], user["user"], user["user"])
        code = role() or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child ends here whatever happens
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


_SANDBOX_TASKS = 64  # the supervisor's, the test process's and the practice server's threads, with room


def _nproc_per_namespace() -> bool:
    """Whether the process limit counts a user's tasks per user namespace (Linux 5.14 and later);
    before, it counted every process of the grader's user on the machine.

    Example:
        >>> isinstance(_nproc_per_namespace(), bool)
        True
    """
    numbers = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return numbers is not None and (int(numbers.group(1)), int(numbers.group(2))) >= (5, 14)


def _python(isolated: bool) -> list[str]:
    """The interpreter for a role; ``isolated`` (-I): never imports from the submission's folder."""
    return [sys.executable, *(["-I"] if isolated else []), "-m", "labkit.grading.execute"]


class _Supervisor:
    def __init__(self, argv: list[str]) -> None:
        self.results_fd, self.notebook = int(argv[0]), argv[1]
        self.cell_timeout, self.output_limit = float(argv[2]), int(argv[3])
        self.config = json.loads(argv[4])
        self.limits = self.config["limits"]
        self.generation = 0
        self.cells: subprocess.Popen[bytes] | _Forked | None = None
        self.server: _Forked | None = None
        self.from_cells = self.to_cells = -1
        self.is_init = os.getpid() == 1
        if self.is_init and self.config.get("uid") is not None:
            os.environ["LABKIT_GRADE_OWN_PROC"] = "1"  # the submission's user has this PID namespace to itself

    def _userns(self) -> bool:
        """Whether this sandbox is a user namespace's (no grading user of its own: the roles confine themselves)."""
        return self.is_init and self.config.get("uid") is None

    def _user(self, offset: int) -> dict[str, Any]:
        uid = self.config.get("uid")
        if uid is None:
            return {}
        return {"user": uid + offset, "group": uid, "extra_groups": []}

    def start_cells(self, forked: bool = False) -> bool:
        """Start the submission process; run its cells; ``True`` once it reported them."""
        self.spawn_cells(forked)
        return self.cells_reported()

    def spawn_cells(self, forked: bool) -> None:
        """Start the submission process: ``forked`` from this one (only before the grader sent the
        tests and the nonce, and before any thread runs), else a fresh interpreter."""
        self.generation += 1
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        # with a user namespace (no user of its own) the student's process confines itself first; the
        # process limit then counts every task of the namespace's user (this sandbox only): room for ours
        confine = ["confine"] if self._userns() else []
        processes = self.limits.get("processes") or 0
        limits = dict(self.limits, processes=processes if self.config.get("uid") is not None
                      else processes + _SANDBOX_TASKS if confine and _nproc_per_namespace() else 0)
        args = [str(up_w), str(down_r), self.notebook, str(self.cell_timeout), str(self.output_limit),
                str(self.generation), json.dumps(limits), *confine]
        if forked:
            def cells() -> int:
                sys.path.insert(0, os.getcwd())  # what `python -m` gives it: the notebook's own modules import
                return _cells_main(args)

            self.cells = _fork(cells, (up_w, down_r), self._user(0))
        else:
            self.cells = subprocess.Popen(
                [*_python(False), "cells", *args],
                stdin=subprocess.DEVNULL, pass_fds=(up_w, down_r), start_new_session=True, **self._user(0))
        os.close(up_w)
        os.close(down_r)
        _ahead_of_forks(self.cells.pid)
        self.from_cells, self.to_cells = up_r, down_w

    def cells_reported(self) -> bool:
        """Wait for the submission process's report on its cells."""
        try:
            frame = _read_frame(self.from_cells, time.monotonic() + self.limits["wall"])
        except (TimeoutError, ValueError):
            frame = None
        if frame is None:
            return False
        try:
            self.reports = json.loads(frame.decode("utf-8")).get("cells")
        except (UnicodeDecodeError, ValueError, AttributeError):
            self.reports = []
        return True

    def stop_cells(self) -> None:
        for fd in (self.from_cells, self.to_cells):
            if fd >= 0:
                os.close(fd)
        self.from_cells = self.to_cells = -1
        if self.cells is None:
            return
        try:
            os.killpg(self.cells.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        uid = self.config.get("uid")
        if self.is_init and uid is not None:  # every process of the submission's user, all at once
            for _round in range(3):
                subprocess.run(["kill", "-KILL", "--", "-1"], user=uid, group=uid, extra_groups=[],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif self.is_init:  # everything the notebook started, wherever it went (this PID namespace is ours)
            keep = {1, os.getpid(), self.tests.pid, *([self.server.pid] if self.server else [])}
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) not in keep:
                    try:
                        os.kill(int(entry), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        try:
            self.cells.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.cells = None

    def reap_orphans(self) -> None:
        """Wait for the zombies of processes the notebook forked whose parents are gone (this process,
        the namespace's init, inherits them; each would still count against the user's process limit)."""
        while True:
            tracked = {p.pid for p in (self.cells, getattr(self, "tests", None), self.server) if p is not None}
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) in tracked:
                    continue
                try:
                    with open(f"/proc/{entry}/stat", "rb") as handle:
                        fields = handle.read().rsplit(b")", 1)[1].split()
                    if fields[0] == b"Z" and int(fields[1]) == os.getpid():
                        os.waitpid(int(entry), os.WNOHANG)
                except (OSError, IndexError, ValueError):
                    continue
            time.sleep(0.2)

    def report(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")
        while data:
            data = data[os.write(self.results_fd, data):]

    def relay(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.cells is None:
            if not self.start_cells():
                self.stop_cells()
                return {"died": "it did not finish its cells again"}
        deadline = time.monotonic() + max(0.0, float(request["timeout"]))
        try:
            _send_frame(self.to_cells, pickle.dumps(request["request"]))
            frame = _read_frame(self.from_cells, deadline)
        except TimeoutError:
            self.stop_cells()
            return {"timeout": True}
        except (OSError, ValueError) as exc:
            self.stop_cells()
            return {"died": str(exc)[:200]}
        if frame is None:
            code = self.cells.poll() if self.cells else None
            self.stop_cells()
            return {"died": f"exit status {code}"}
        return {"payload": frame}

    def start_server(self) -> int:
        """The practice server, in a child of its own (forked: this process stays single-threaded
        until the other roles are forked); it ends when this process does. Returns the pipe that
        holds it."""
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()

        def serve() -> int:
            from labkit.practice import PracticeConfig, PracticeServer

            server = PracticeServer(PracticeConfig.from_env(fast=True)).start()
            os.write(ready_w, server.base_url.encode("utf-8") + b"\n")
            os.close(ready_w)
            while os.read(hold_r, 1):  # until the supervisor closes its end or ends
                pass
            server.stop(timeout=1.0)
            return 0

        self.server = _fork(serve, (ready_w, hold_r), {}, session=False)
        os.close(ready_w)
        os.close(hold_r)
        _ahead_of_forks(self.server.pid)  # as when it was a thread of this process
        with os.fdopen(ready_r, "rb") as ready:
            url = ready.readline().decode("utf-8").strip()
        if not url:
            raise RuntimeError("the practice server did not start (see the log above)")
        os.environ["LABKIT_BASE_URL"] = url
        return hold_w

    def run(self) -> int:
        _warm()
        # from now on nothing is imported from the submission's folder (the notebook's cells write
        # there): the submission process puts it back for itself
        sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
        _ahead_of_forks(os.getpid())  # this process too: it must answer, relay and stop whatever happens
        server_hold = self.start_server()
        tests_down_r, tests_down_w = os.pipe()
        tests_up_r, tests_up_w = os.pipe()
        tests_args = [str(tests_up_w), str(tests_down_r), str(self.cell_timeout),
                      json.dumps(self.config.get("roots", [])), *(["confine"] if self._userns() else [])]

        def tests() -> int:
            import site

            user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else ""
            sys.path[:] = [p for p in sys.path if p != user_site]  # as `python -I`
            return _tests_main(tests_args)

        self.tests = _fork(tests, (tests_up_w, tests_down_r), self._user(1))  # its imports overlap the cells
        os.close(tests_up_w)
        os.close(tests_down_r)
        self.spawn_cells(forked=True)
        undumpable()  # the nonce and the tests pass through this process (its children were forked before)
        if self.is_init:  # threads only now: every child above was forked from a single-threaded process
            import threading

            threading.Thread(target=self.reap_orphans, daemon=True, name="labkit-reaper").start()
        tests_in = sys.stdin.buffer
        sys.stdin = io.StringIO("")
        if not self.cells_reported():
            return 4
        self.report({"event": "cells", "cells": self.reports})
        request = json.loads(tests_in.readline() or b"{}")
        nonce = request.get("nonce")
        _send_frame(tests_down_w, pickle.dumps(request.get("tests", {})))
        while True:
            frame = _read_frame(tests_up_r)
            if frame is None:
                return 5
            message = pickle.loads(frame)  # the test process runs no student code
            if message.get("op") == "results":
                self.report({"event": "results", "nonce": nonce, "results": message["results"]})
                break
            _send_frame(tests_down_w, pickle.dumps(self.relay(message)))
        self.stop_cells()
        os.close(server_hold)
        return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m labkit.grading.execute supervise|cells|tests ...`` (see the module's docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    role, rest = argv[0], argv[1:]
    if role == "cells":
        return _cells_main(rest)
    if role == "tests":
        return _tests_main(rest)
    code = _Supervisor(rest).run()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
