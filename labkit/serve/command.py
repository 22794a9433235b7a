"""The vLLM command line: which executable, which flags, and how to show it without the API key.

Example:
    >>> cmd = build_vllm_command(python="/opt/none/bin/python")
    >>> cmd[1:4]
    ['-m', 'vllm.entrypoints.openai.api_server', '--model']
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import UsageError
from ..i18n import _

__all__ = [
    "DEFAULT_HF_MODEL",
    "DEFAULT_SERVED_NAME",
    "SMALL_HF_MODEL",
    "CPU_EXTRA_ARGS",
    "CPU_ENV",
    "OFFLINE_ENV",
    "build_vllm_command",
    "default_chat_template",
    "shown_command",
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
#: Flags whose value is a secret: shown masked.
SECRET_FLAGS = ("--api-key",)
MASK = "****"


def default_chat_template() -> Path:
    """The ChatML template of llava-v1.6-34b shipped with labkit (accepts OpenAI content lists).

    Example:
        >>> default_chat_template().name
        'llava-v1.6-34b-chatml.jinja'
    """
    return Path(__file__).resolve().parent.parent / "templates" / CHAT_TEMPLATE_NAME


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
    data_parallel_size: int = 1,
    gpu_memory_utilization: float | None = 0.9,
    chat_template: str | os.PathLike[str] | None = None,
    python: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that serves ``model`` with vLLM's OpenAI-compatible server.

    Uses ``vllm serve MODEL …`` when a ``vllm`` command exists (next to ``python`` if given, else
    on PATH), otherwise ``PYTHON -m vllm.entrypoints.openai.api_server --model MODEL …``
    (``python`` defaults to this interpreter). The vllm-cpu build always gets ``python -m``: its
    ``vllm`` command crashes. ``gpu_memory_utilization=None`` leaves the flag out;
    ``data_parallel_size`` > 1 runs that many replicas behind one port (``--data-parallel-size``).
    ``extra_args`` are appended as they are, e.g. :data:`CPU_EXTRA_ARGS`.

    Example:
        >>> cmd = build_vllm_command(port=8001, python="/opt/none/bin/python")
        >>> cmd[:5]
        ['/opt/none/bin/python', '-m', 'vllm.entrypoints.openai.api_server', '--model', 'llava-hf/llava-v1.6-34b-hf']
        >>> cmd[cmd.index("--limit-mm-per-prompt") + 1]
        '{"image": 1}'
    """
    if max_model_len < 1 or images_per_prompt < 0 or tensor_parallel_size < 1 or data_parallel_size < 1:
        raise UsageError(_(
            "max_model_len={max_model_len}, images_per_prompt={images}, tensor_parallel_size={tp}, "
            "data_parallel_size={dp}: use positive numbers (images_per_prompt may be 0).").format(
            max_model_len=max_model_len, images=images_per_prompt, tp=tensor_parallel_size, dp=data_parallel_size))
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
    if data_parallel_size > 1:
        flags += ["--data-parallel-size", str(data_parallel_size)]
    if gpu_memory_utilization is not None:
        flags += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    return head + flags + list(extra_args)


def shown_command(command: Sequence[str], secrets: Sequence[str | None] = ()) -> str:
    """The command as a shell line for people to read, with every API key masked.

    Example:
        >>> shown_command(["vllm", "serve", "m", "--api-key", "sk-x", "--port", "1"])
        'vllm serve m --api-key **** --port 1'
        >>> shown_command(["vllm", "--api-key=sk-secret"])
        'vllm --api-key=****'
    """
    shown: list[str] = []
    hide_next = False
    for arg in command:
        if hide_next:
            shown.append(MASK)
            hide_next = False
            continue
        flag, eq, _value = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                shown.append(f"{flag}={MASK}")
            else:
                shown.append(arg)
                hide_next = True
            continue
        shown.append(arg)
    line = " ".join(a if a == MASK or a.endswith("=" + MASK) else shlex.quote(a) for a in shown)
    return redact(line, secrets)


def secrets_in(command: Sequence[str]) -> list[str]:
    """The secret values a command line carries (to redact them from logs too).

    Example:
        >>> secrets_in(["vllm", "--api-key", "sk-x", "--api-key=sk-y"])
        ['sk-x', 'sk-y']
    """
    found = []
    for i, arg in enumerate(command):
        flag, eq, value = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq and value:
                found.append(value)
            elif not eq and i + 1 < len(command):
                found.append(command[i + 1])
    return found


def redact(text: str, secrets: Sequence[str | None]) -> str:
    """``text`` with every secret replaced by the mask (longest first).

    Example:
        >>> redact("api_key='sk-abc' ok", ["sk-abc"])
        "api_key='****' ok"
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
