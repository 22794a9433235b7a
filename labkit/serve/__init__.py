"""Serve llava-v1.6 yourself with vLLM, and point labkit at it.

For TAs and students with a GPU (``pip install "labkit[serve]"`` installs vLLM there; on a CPU use
``scripts/setup-vllm-cpu.sh``). One module per job:

- :mod:`labkit.serve.command`: the vLLM command line (:func:`build_vllm_command`), keys masked when shown;
- :mod:`labkit.serve.gpus`: which GPUs there are and what fits (:func:`check_gpus`, :func:`plan_fit`),
  and how to serve a whole class (:func:`plan_class`);
- :mod:`labkit.serve.process`: :class:`VLLMServer` starts it under a watchdog, waits until it answers
  ``/health``, explains a failed start and stops it with everything it started.

- :mod:`labkit.serve.main`: the ``labkit serve`` command (:func:`main_serve`; :mod:`labkit.cli` calls it).

Importing this package starts nothing and needs neither vLLM nor torch.

Example:
    >>> from labkit.serve import build_vllm_command
    >>> cmd = build_vllm_command(python="/nonexistent/python")
    >>> cmd[1:4]
    ['-m', 'vllm.entrypoints.openai.api_server', '--model']
"""

from __future__ import annotations

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
from .main import main_serve
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
