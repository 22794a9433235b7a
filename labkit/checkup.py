"""``labkit doctor``: check the configuration and the backend, and say what to fix.

Example:
    >>> from labkit import doctor
    >>> report = doctor()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from . import backend
from .config import Settings, load_settings, mask_key
from .context import backend_context_length
from .errors import BackendError, ConfigError, LabkitError, UnexpectedResponse
from .failures import describe_body, translate_error
from .i18n import _
from .messages import CONTEXT_TOKENS
from .streaming import chat
from .transport import deadline_scope

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
        line = _("{name}: {detail}").format(name=self.name, detail=self.detail)
        return f"{mark} {line}" + (f"\n    → {self.fix}" if self.fix and not self.ok else "")


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


def _model_ids(client: Any, base_url: str) -> list[str]:
    """The model names the backend lists; a page that is not a model list raises UnexpectedResponse."""
    __tracebackhide__ = True
    raw = client.models.with_raw_response.list()
    http = raw.http_response
    kind = http.headers.get("content-type", "")
    if "json" not in kind.lower():
        what = describe_body(kind, http.content)
        raise UnexpectedResponse(_(
            "The server at {url} answered /models with {what}, not a model list. LABKIT_BASE_URL probably "
            "points at another service (a login portal, a web page, the wrong port): set it to the backend's "
            "API URL, e.g. http://HOST:8008/api/v1.").format(url=base_url, what=what), status=http.status_code)
    try:
        return [str(m.id) for m in raw.parse()]
    except Exception:  # JSON, but not a list of models
        what = describe_body(kind, http.content)
        raise UnexpectedResponse(_(
            "The server at {url} answered /models with {what}, not a model list: check LABKIT_BASE_URL.").format(
            url=base_url, what=what), status=http.status_code) from None


def _failed(name: str, err: LabkitError) -> Check:
    """A failed check: what went wrong in a few words, and the error's sentence once, as the fix."""
    status = getattr(err, "status", None)
    detail = err.__class__.__name__ + (f" (HTTP {status})" if isinstance(err, BackendError) and status else "")
    return Check(name, False, detail, str(err))


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
        add(Check(_("configuration"), False, str(exc), _("Fix or unset the variable named above.")))
        return report
    where = settings.sources.get("base_url", "")
    try:
        base_url = backend.resolve_base_url(settings)
    except LabkitError as exc:
        add(_failed(_("backend reachable"), exc))
        return report
    add(Check(_("configuration"), True,
              _("base URL {url} ({source}), API key {key}, model {model}, timeout {timeout:g} s").format(
                  url=base_url, source=where or _("set in code"), key=mask_key(settings.api_key),
                  model=settings.model, timeout=settings.timeout)))

    client = backend.client(settings)
    try:
        with deadline_scope(settings.timeout):  # trickled headers or body: bounded as a chat's are
            ids = _model_ids(client, base_url)
    except Exception as exc:  # every failure becomes a sentence with a fix
        err = translate_error(exc, base_url=base_url, model=settings.model, api_key=settings.api_key,
                              timeout=settings.timeout)
        add(_failed(_("backend reachable"), err))
        return report
    add(Check(_("backend reachable"), True, _("{url} lists {n} model(s): {names}").format(
        url=base_url, n=len(ids), names=", ".join(ids) or _("none"))))
    if settings.model not in ids:
        add(Check(_("model"), False, _("{model!r} is not among them").format(model=settings.model),
                  _("Set LABKIT_MODEL to one of: {names}.").format(names=", ".join(ids))))
        return report
    add(Check(_("model"), True, _("{model} is served").format(model=settings.model)))
    context = backend_context_length(settings, client=client)
    add(Check(_("context length"), True,
              _("{n} tokens (the backend's max_model_len): a Conversation keeps within it").format(n=context)
              if context is not None else
              _("not reported by the backend (FastChat does not say): a Conversation assumes {n} tokens").format(
                  n=CONTEXT_TOKENS)))

    tiny = Image.new("RGB", (32, 32), (200, 30, 30))
    started = time.perf_counter()
    try:
        reply = chat("What colour is this image? Answer in a few words.", image=tiny, max_tokens=16,
                     display=False, settings=settings, client=client, retries=0)
    except LabkitError as exc:
        add(_failed(_("streaming request"), exc))
        return report
    report.ttft = reply.ttft
    ttft = _("{seconds:.2f} s").format(seconds=reply.ttft) if reply.ttft is not None else _("n/a")
    add(Check(_("streaming request"), bool(reply.text),
              _("first token after {ttft}, {n} tokens in {seconds:.2f} s: {start!r}").format(
                  ttft=ttft, n=reply.completion_tokens, seconds=time.perf_counter() - started, start=reply.text[:60]),
              _("The backend streamed no text: tell your TA.")))
    return report
