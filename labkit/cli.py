"""The ``labkit`` command: ``labkit practice``, ``labkit doctor``, ``labkit chat``, ``labkit serve``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _practice_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("practice", help="run the offline practice server (the course backend's stand-in)",
                       description="Serve the practice backend at http://HOST:PORT/v1 and /api/v1 until Ctrl-C.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for a lab)")
    p.add_argument("--port", type=int, default=8008, help="port (default 8008, like the course backend)")
    p.add_argument("--dialect", choices=["fastchat", "vllm"], default=None,
                   help="wire format: fastchat (the course backend, default) or vllm")
    p.add_argument("--model", default=None, help="served model name (default llava-v1.6-34b)")
    p.add_argument("--base-path", action="append", default=[], metavar="PATH",
                   help="serve the API under this path (repeatable; default /v1 and /api/v1)")
    p.add_argument("--fast", action="store_true", default=None, help="no pacing delays (tests, CI)")
    p.add_argument("--ttft", type=float, default=None, help="seconds to the first token (default 0.6 + 0.5 per image)")
    p.add_argument("--ttft-per-image", type=float, default=None, help="extra seconds per image (default 0.5)")
    p.add_argument("--tokens-per-second", type=float, default=None, help="generation speed (default 25)")
    p.add_argument("--allow-non-stream", action="store_true", default=None, help="also answer stream=false")
    p.add_argument("--no-leak", action="store_true", help="do not leak the 'assistant\\n' role prefix")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="require this API key (repeatable); without it any key is accepted")
    p.add_argument("--max-images", type=int, default=None, help="images per request (default 1)")
    p.add_argument("--max-body-mb", type=float, default=None, help="request size limit in MB (default 20)")
    faults = p.add_argument_group("fault injection (off by default)")
    faults.add_argument("--drop-after", type=int, help="cut the connection after N tokens")
    faults.add_argument("--stall-after", type=int, help="stop sending after N tokens (see --stall-seconds)")
    faults.add_argument("--stall-seconds", type=float, default=3600.0)
    faults.add_argument("--error-after", type=int, help="send the mid-stream error event after N tokens")
    faults.add_argument("--fail-status", type=int, choices=[429, 503], help="answer requests with this status")
    faults.add_argument("--fault-times", type=int, help="faults hit only the first N requests (default: all)")
    faults.add_argument("--rate-limit", type=int, help="requests per minute per API key")


def _run_practice(args: argparse.Namespace) -> int:
    from .practice import FaultConfig, PracticeConfig, run_forever

    faults = FaultConfig(drop_after=args.drop_after, stall_after=args.stall_after, stall_seconds=args.stall_seconds,
                         error_after=args.error_after, fail_status=args.fail_status, times=args.fault_times,
                         rate_limit=args.rate_limit)
    config = PracticeConfig.from_env(
        dialect=args.dialect, model=args.model, fast=args.fast, ttft=args.ttft, ttft_per_image=args.ttft_per_image,
        tokens_per_second=args.tokens_per_second, allow_non_stream=args.allow_non_stream,
        leak_role_prefix=False if args.no_leak else None, api_keys=tuple(args.api_key) or None,
        max_images=args.max_images, base_paths=tuple(args.base_path) or None,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024) if args.max_body_mb else None, faults=faults)
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    urls = [f"http://{shown}:{args.port}{'/' + p.strip('/') if p.strip('/') else ''}" for p in config.base_paths]
    print(f"labkit practice server ({config.dialect} dialect, {'fast' if config.fast else 'paced like the 34B model'})\n"
          f"  base URL: {'   '.join(urls)}\n"
          f"  use it:   export LABKIT_BASE_URL={urls[0]}\n"
          f"  stop:     Ctrl-C", flush=True)
    run_forever(config, host=args.host, port=args.port)
    return 0


def _run_doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor

    return 0 if doctor() else 1


def _run_chat(args: argparse.Namespace) -> int:
    from .streaming import chat

    reply = chat(args.question, image=args.image, max_tokens=args.max_tokens, display="terminal")
    print(f"[{reply.finish_reason}] {reply.timings()}", file=sys.stderr)
    return 0


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
    sub.add_parser("doctor", help="check the configuration and the backend, and say what to fix")
    c = sub.add_parser("chat", help="ask one question from the terminal")
    c.add_argument("question")
    c.add_argument("--image", help="path of an image to send")
    c.add_argument("--max-tokens", type=int, default=None)
    _grading_parsers(sub)
    sub.add_parser("serve", help="serve llava-v1.6 yourself with vLLM (GPU); `labkit serve --help`",
                   add_help=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from .serve import main_serve

        return main_serve(argv[1:])
    args = parser.parse_args(argv)
    from .errors import LabkitError

    try:
        return {"practice": _run_practice, "doctor": _run_doctor, "chat": _run_chat,
                "assignment": _run_assignment, "grade": _run_grade}[args.command](args)
    except (LabkitError, ValueError) as exc:  # ValueError: a bad LABKIT_PRACTICE_* value, named in the message
        print(f"labkit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
