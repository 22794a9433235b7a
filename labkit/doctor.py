"""``labkit doctor``: check the configuration and the backend, and say what to fix.

Example:
    >>> from labkit.doctor import doctor
    >>> report = doctor()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from .config import Settings, client as make_client, load_settings, mask_key, resolve_base_url
from .errors import ConfigError, LabkitError
from .failures import translate_error
from .streaming import chat

__all__ = ["Check", "DoctorReport", "doctor"]


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it passed, details, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.detail}" + (f"\n    → {self.fix}" if self.fix and not self.ok else "")


@dataclass
class DoctorReport:
    """All checks; truthy when every one passed."""

    checks: list[Check] = field(default_factory=list)
    ttft: float | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "\n".join(map(str, self.checks))


def doctor(settings: Settings | None = None, *, echo: Callable[[str], None] = print) -> DoctorReport:
    """Show the configuration (key masked), reach the backend, list its models, and send a tiny
    streaming request with a tiny image; report the time to first token. Each failure says what to do.

    Example:
        >>> report = doctor(echo=lambda line: None)  # doctest: +SKIP
        >>> report.ok                                 # doctest: +SKIP
        True
    """
    report = DoctorReport()

    def add(check: Check) -> None:
        report.checks.append(check)
        echo(str(check))

    try:
        settings = settings or load_settings()
    except ConfigError as exc:
        add(Check("configuration", False, str(exc), "Fix or unset the variable named above."))
        return report
    where = settings.sources.get("base_url", "")
    base_url = resolve_base_url(settings)
    add(Check("configuration", True,
              f"base URL {base_url} ({where or 'set in code'}), API key {mask_key(settings.api_key)}, "
              f"model {settings.model}, timeout {settings.timeout:g} s"))

    client = make_client(settings, max_retries=0)
    try:
        ids = [m.id for m in client.models.list()]
    except Exception as exc:  # every failure becomes a sentence with a fix
        err = translate_error(exc, base_url=base_url, model=settings.model, api_key=settings.api_key)
        add(Check("backend reachable", False, str(err).split(": ", 1)[0], str(err)))
        return report
    add(Check("backend reachable", True, f"{base_url} lists {len(ids)} model(s): {', '.join(ids) or 'none'}"))
    if settings.model not in ids:
        add(Check("model", False, f"{settings.model!r} is not among them",
                  f"Set LABKIT_MODEL to one of: {', '.join(ids)}."))
        return report
    add(Check("model", True, f"{settings.model} is served"))

    tiny = Image.new("RGB", (32, 32), (200, 30, 30))
    started = time.perf_counter()
    try:
        reply = chat("What colour is this image? Answer in a few words.", image=tiny, max_tokens=16,
                     display=False, settings=settings, client=client, retries=0)
    except LabkitError as exc:
        add(Check("streaming request", False, exc.__class__.__name__, str(exc)))
        return report
    report.ttft = reply.ttft
    ttft = f"{reply.ttft:.2f} s" if reply.ttft is not None else "n/a"
    add(Check("streaming request", bool(reply.text),
              f"first token after {ttft}, {reply.completion_tokens} tokens in {time.perf_counter() - started:.2f} s: "
              f"{reply.text[:60]!r}", "The backend streamed no text: tell your TA."))
    return report
