"""The ``labkit`` command: ``labkit practice``, ``labkit doctor``, ``labkit chat``, ``labkit serve``,
``labkit workspace``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .i18n import _

__all__ = ["main"]


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
                   help=_("seconds to the first token before the prompt is read (default 0.15)"))
    p.add_argument("--prefill-tokens-per-second", type=positive, default=None,
                   help=_("how fast the prompt is read, images' tokens included: the time to the first token grows "
                          "with the prompt (default 4000)"))
    p.add_argument("--ttft-per-image", type=seconds, default=None, help=_("extra seconds per image (default 0)"))
    p.add_argument("--tokens-per-second", type=positive, default=None, help=_("generation speed (default 25)"))
    p.add_argument("--allow-non-stream", action="store_true", default=None, help=_("also answer stream=false"))
    p.add_argument("--no-leak", action="store_true", help=_("do not leak the 'assistant\\n' role prefix"))
    p.add_argument("--api-key-file", action="append", default=[], metavar="FILE",
                   help=_("require the API keys in FILE: one a line, or `username,key` lines like a hub's keys "
                          "file (repeatable; also $LABKIT_PRACTICE_API_KEYS, space-separated). Without a key any "
                          "key is accepted"))
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help=_("require this API key (repeatable). Every user of the machine sees it in `ps`: prefer "
                          "--api-key-file"))
    p.add_argument("--max-images", type=count, default=None, help=_("images per request (default 1)"))
    p.add_argument("--max-body-mb", type=positive, default=None,
                   help=_("request size limit in MB (default: none, as on the real servers)"))
    p.add_argument("--max-model-len", type=count, default=None,
                   help=_("context length in tokens (default 4096): the vllm dialect counts the images' tokens "
                          "too, the fastchat dialect the text only, as the real servers do"))
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


def _practice_keys(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The keys ``labkit practice`` requires: its key files, ``$LABKIT_PRACTICE_API_KEYS`` and (with a
    warning: ``ps`` shows them) ``--api-key``; None when there are none."""
    import os

    from .keyfile import command_line_warning, read_key_file

    if args.api_key:
        print(command_line_warning("labkit practice", _("--api-key-file FILE (or LABKIT_PRACTICE_API_KEYS in the "
                                                        "environment)")), file=sys.stderr, flush=True)
    keys = [key for path in args.api_key_file for key in read_key_file(path)]
    keys += os.environ.get("LABKIT_PRACTICE_API_KEYS", "").replace(",", " ").split()
    keys += args.api_key
    return tuple(dict.fromkeys(keys)) or None


def _run_practice(args: argparse.Namespace) -> int:
    from .i18n import _
    from .practice import FaultConfig, PracticeConfig, run_forever

    faults = FaultConfig(drop_after=args.drop_after, stall_after=args.stall_after, stall_seconds=args.stall_seconds,
                         error_after=args.error_after, fail_status=args.fail_status, times=args.fault_times,
                         rate_limit=args.rate_limit)
    config = PracticeConfig.from_env(
        dialect=args.dialect, model=args.model, fast=args.fast, ttft=args.ttft, ttft_per_image=args.ttft_per_image,
        prefill_tokens_per_second=args.prefill_tokens_per_second,
        tokens_per_second=args.tokens_per_second, allow_non_stream=args.allow_non_stream,
        leak_role_prefix=False if args.no_leak else None, api_keys=_practice_keys(args),
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
                else _("Any API key is accepted: add --api-key-file FILE to require the keys in it."))
        fault = (_("The X-Practice-Fault header is ignored.") if not config.fault_header
                 else _("Any client can inject faults with the X-Practice-Fault header: add --no-fault-header."))
        print(_("Warning: serving on {host}, beyond this machine: everyone who can reach port {port} can use "
                "this server. {keys} {fault}").format(host=args.host, port=args.port, keys=keys, fault=fault),
              file=sys.stderr, flush=True)
    run_forever(config, host=args.host, port=args.port)
    return 0


def _run_doctor(args: argparse.Namespace) -> int:
    from .checkup import doctor

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
    w.add_argument("dest", nargs="?", default="work", metavar="DEST", help=_("your copy (default: work)"))
    w.add_argument("--from", dest="src", default="notebooks", metavar="SRC",
                   help=_("the course's lessons (default: notebooks)"))


def _run_workspace(args: argparse.Namespace) -> int:
    from .workspace import sync

    print(sync(args.src, args.dest).summary(), flush=True)
    return 0


def _serve_parser(sub: Any) -> None:
    from .serve.main import serve_parser

    serve_parser(sub)


def _grading_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .i18n import _

    a = sub.add_parser("assignment", help=_("list the graded assignments, or write one's student version"),
                       description=_("Write the student version of an assignment (no solutions, no hidden tests) "
                                     "into your workspace's labs/ folder, where JupyterLab shows it, or into DEST."))
    a.add_argument("--list", action="store_true", help=_("print the assignments' names, one a line"))
    a.add_argument("name", nargs="?", metavar="NAME",
                   help=_("an assignment's name, or the path of an otter master notebook"))
    a.add_argument("dest", nargs="?", metavar="DEST",
                   help=_("the folder to write the student notebook into (default: your workspace's labs/ folder, "
                          "e.g. work/labs)"))
    g = sub.add_parser("grade", help=_("grade a folder of submitted notebooks into a CSV gradebook"),
                       description=_("Grade SUBMISSIONS/<student>.ipynb (or SUBMISSIONS/<student>/*.ipynb), each in "
                                     "its own sandboxed process with its own practice server; re-running resumes."))
    g.add_argument("name", metavar="NAME", help=_("an assignment's name, or the path of an otter master notebook"))
    g.add_argument("submissions", metavar="SUBMISSIONS", help=_("the folder of submitted notebooks"))
    g.add_argument("-o", "--output", default="grades.csv", help=_("the gradebook CSV (default grades.csv)"))
    g.add_argument("--feedback", default=None, help=_("folder for the feedback files (default <gradebook>-feedback)"))
    g.add_argument("--jobs", type=int, default=1, help=_("submissions graded at once (default 1)"))
    g.add_argument("--time-limit", type=float, default=120.0, help=_("seconds per submission (default 120)"))
    g.add_argument("--cell-time-limit", type=float, default=30.0, help=_("seconds per cell (default 30)"))
    g.add_argument("--memory-mb", type=int, default=4096, help=_("address space per submission in MB (default 4096)"))
    g.add_argument("--lang", choices=("zh", "en"), default="zh",
                   help=_("the language of the students' feedback files (default zh)"))
    g.add_argument("--roster", default=None,
                   help=_("the class roster exported by the LMS (CSV): ids are matched against it and the grades "
                          "written in its columns to <gradebook>-<format>.csv"))
    g.add_argument("--format", dest="lms_format", choices=("plain", "canvas", "moodle"), default="plain",
                   help=_("the LMS the roster comes from and the grades go to (default plain)"))


def _run_assignment(args: argparse.Namespace) -> int:
    from .grading import list_assignments, write_student_version
    from .i18n import _

    if args.list or not args.name:
        print("\n".join(list_assignments()))
        return 0
    from .workspace import lab_destination

    path = write_student_version(args.name, lab_destination(args.dest, name=args.name))
    print(_("Wrote the student version: {path}").format(path=str(path)))
    return 0


def _run_grade(args: argparse.Namespace) -> int:
    from .grading import Limits, grade_folder

    limits = Limits(wall=args.time_limit, cell=min(args.cell_time_limit, args.time_limit), memory_mb=args.memory_mb)
    summary = grade_folder(args.name, args.submissions, args.output, feedback_dir=args.feedback, limits=limits,
                           jobs=args.jobs, lang=args.lang, roster=args.roster, lms_format=args.lms_format)
    print(summary.report())
    return 130 if summary.interrupted else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labkit`` command.

    Example:
        >>> main(["--help"])  # doctest: +SKIP
    """
    from ._argparse_i18n import ArgumentParser, argparse_in_language

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # its own runner: vLLM flags after `--` pass through untouched
        from .serve import main_serve

        return main_serve(argv[1:])
    with argparse_in_language():  # argparse's own words ("usage:", "options", its errors) in labkit's language
        parser = ArgumentParser(prog="labkit", description=_("The multimodal-LLM lab kit."))
        sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                    title=_("commands"))
        _practice_parser(sub)
        sub.add_parser("doctor", help=_("check the configuration and the backend, and say what to fix"),
                       description=_("Check the configuration and the backend, and say what to fix."))
        c = sub.add_parser("chat", help=_("ask one question from the terminal"),
                           description=_("Ask one question from the terminal; the answer streams as it comes."))
        c.add_argument("question", metavar="QUESTION", help=_("the question, in quotes"))
        c.add_argument("--image", metavar="PATH", help=_("path of an image to send"))
        c.add_argument("--max-tokens", type=int, default=None, metavar="N", help=_("the longest answer, in tokens"))
        _workspace_parser(sub)
        _grading_parsers(sub)
        _serve_parser(sub)
        args = parser.parse_args(argv)
    from .errors import LabkitError

    try:
        return {"practice": _run_practice, "doctor": _run_doctor, "chat": _run_chat,
                "workspace": _run_workspace, "assignment": _run_assignment, "grade": _run_grade}[args.command](args)
    except (LabkitError, ValueError) as exc:  # ValueError: a bad LABKIT_PRACTICE_* value, named in the message
        print(_("labkit: {error}").format(error=exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
