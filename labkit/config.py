"""Settings from the environment and :func:`configure`: values only (nothing here starts or sends).

Variables (the first one set wins):

===================  ==========================================  ==========================
setting              variables                                   default
===================  ==========================================  ==========================
base URL             ``LABKIT_BASE_URL``, ``OPENAI_BASE_URL``    the embedded practice server
API key              ``LABKIT_API_KEY``, ``OPENAI_API_KEY``      ``dummy_key`` (the course backend takes any key)
model                ``LABKIT_MODEL``                            ``llava-v1.6-34b``
timeout (seconds)    ``LABKIT_TIMEOUT``                          ``120`` (the longest wait for anything)
answer deadline (s)  ``LABKIT_MAX_SECONDS``                      none (an answer may take as long as it streams)
===================  ==========================================  ==========================

:func:`configure` overrides them for this Python process (used by ``labkit.serve`` after it starts a
local vLLM). ``OPENAI_API_KEY`` is used only with ``OPENAI_BASE_URL`` (or no URL), never sent to a
``LABKIT_BASE_URL``. A key is never printed, logged or written: it is held in a :class:`Secret`, whose
repr and str mask it, and unwrapped only where the HTTP client is built (:mod:`labkit.backend`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .errors import ConfigError
from .i18n import N_, _

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "UNCHANGED",
    "Secret",
    "Settings",
    "configure",
    "reset_configuration",
    "load_settings",
    "mask_key",
]

DEFAULT_MODEL = "llava-v1.6-34b"
DEFAULT_TIMEOUT = 120.0
PLACEHOLDER_KEY = "dummy_key"
COURSE_URL_EXAMPLE = "http://HOST:8008/api/v1"


class _Unchanged:
    """The default of :func:`configure`'s arguments: leave that setting as it is."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()

_overrides: dict[str, object] = {}
_lock = threading.Lock()


def mask_key(key: str | Secret | None) -> str:
    """Show enough of a key to recognise it, never the key itself: the last 4 characters of a key of
    16 or more, nothing of a shorter one.

    Example:
        >>> mask_key("sk-course-1234567890")
        '…7890 (20 chars)'
        >>> mask_key("abcdefghi"), mask_key(None)
        ('*** (9 chars)', '(not set)')
    """
    if isinstance(key, Secret):
        key = key.reveal()
    if not key:
        return _("(not set)")
    if len(key) < 16:
        return _("*** ({n} chars)").format(n=len(key))
    return _("…{tail} ({n} chars)").format(tail=key[-4:], n=len(key))


class Secret:
    """An API key that cannot be printed by accident: ``repr``, ``str`` and f-strings show it masked
    (also in ``%xmode Verbose`` tracebacks); :meth:`reveal` gives the key to the HTTP client.

    Example:
        >>> key = Secret("sk-course-1234567890")
        >>> key, f"{key}", key == "sk-course-1234567890"
        (Secret('…7890 (20 chars)'), '…7890 (20 chars)', True)
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        object.__setattr__(self, "_value", value.reveal() if isinstance(value, Secret) else str(value))

    def reveal(self) -> str:
        """The key itself: only for building the HTTP client.

        Example:
            >>> Secret("k").reveal()
            'k'
        """
        return self._value  # type: ignore[no-any-return]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is read-only")

    def __repr__(self) -> str:
        return f"Secret({mask_key(self._value)!r})"

    def __str__(self) -> str:
        return mask_key(self._value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value  # type: ignore[no-any-return]
        if isinstance(other, str):
            return self._value == other  # type: ignore[no-any-return]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("labkit.Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[Any, ...]:  # pickling (multiprocessing) keeps the key working
        return (Secret, (self._value,))


@dataclass(frozen=True)
class Settings:
    """Where labkit sends requests, resolved from :func:`configure` and the environment.

    ``base_url`` is ``None`` when nothing is configured (then :func:`labkit.client` starts the
    embedded practice server). ``api_key`` is a :class:`Secret` (a plain string is wrapped).
    ``max_seconds`` is the most a whole answer may take (``None``: no limit; the timeout still bounds
every wait). ``sources`` says where each value came from, for ``labkit doctor``.

    Example:
        >>> s = Settings(base_url="http://localhost:8008/api/v1", api_key="secret-key-123")
        >>> "secret-key-123" in repr(s) or "secret-key-123" in repr(s.api_key)
        False
    """

    base_url: str | None = None
    api_key: Secret | None = None
    model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    max_seconds: float | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            object.__setattr__(self, "api_key", Secret(self.api_key))

    def __repr__(self) -> str:
        return (
            f"Settings(base_url={self.base_url!r}, api_key={mask_key(self.api_key)!r}, "
            f"model={self.model!r}, timeout={self.timeout!r}, max_seconds={self.max_seconds!r})"
        )


def _check_base_url(value: object, origin: str) -> str:
    __tracebackhide__ = True
    url = str(value).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(_(
            "{origin}={url!r} is not an http(s) URL: set it to the backend's base URL, for example "
            "{example} (the course backend) or http://127.0.0.1:8000/v1 (vLLM).").format(
            origin=origin, url=url, example=COURSE_URL_EXAMPLE))
    if url.endswith("/chat/completions"):
        raise ConfigError(_(
            "{origin}={url!r} includes the endpoint path: drop '/chat/completions' and set it to {fixed!r}; "
            "the client adds the endpoint itself.").format(origin=origin, url=url,
                                                           fixed=url[: -len("/chat/completions")]))
    return url


def _seconds(value: object) -> float | None:
    """``value`` as a positive, finite number of seconds, or None when it is not one."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 and math.isfinite(seconds) else None


def _check_timeout(value: object, origin: str) -> float:
    __tracebackhide__ = True
    seconds = _seconds(value)
    if seconds is None:
        raise ConfigError(_(
            "{origin}={value!r} is not a positive number of seconds: set it to e.g. 120, or unset it.").format(
            origin=origin, value=value))
    return seconds


def _check_max_seconds(value: object, origin: str) -> float:
    __tracebackhide__ = True
    seconds = _seconds(value)
    if seconds is None:
        raise ConfigError(_(
            "{origin}={value!r} is not a positive number of seconds: set it to the most a whole answer may take, "
            "e.g. 300, or unset it for no limit.").format(origin=origin, value=value))
    return seconds


def _check_model(value: object, origin: str) -> str:
    __tracebackhide__ = True
    model = str(value).strip()
    if not model:
        raise ConfigError(_("{origin} is empty: pass a model name such as 'llava-v1.6-34b'.").format(origin=origin))
    return model


def _check_key(value: object, origin: str) -> Secret:
    return Secret(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Field:
    """One setting: the variables it is read from, how a value is checked, and its default."""

    variables: tuple[str, ...]
    check: Callable[[object, str], Any]
    default: Any
    unset: str  # what `sources` says when nothing set it (translated when shown)


_FIELDS: dict[str, _Field] = {
    "base_url": _Field(("LABKIT_BASE_URL", "OPENAI_BASE_URL"), _check_base_url, None,
                       N_("not set: embedded practice server")),
    "api_key": _Field(("LABKIT_API_KEY", "OPENAI_API_KEY"), _check_key, None, N_("not set")),
    "model": _Field(("LABKIT_MODEL",), _check_model, DEFAULT_MODEL, N_("default")),
    "timeout": _Field(("LABKIT_TIMEOUT",), _check_timeout, DEFAULT_TIMEOUT, N_("default")),
    "max_seconds": _Field(("LABKIT_MAX_SECONDS",), _check_max_seconds, None, N_("not set: no limit")),
}


def configure(
    base_url: str | None | _Unchanged = UNCHANGED,
    api_key: str | Secret | None | _Unchanged = UNCHANGED,
    model: str | None | _Unchanged = UNCHANGED,
    timeout: float | None | _Unchanged = UNCHANGED,
    max_seconds: float | None | _Unchanged = UNCHANGED,
) -> None:
    """Override settings for this Python process, on top of the environment.

    An argument left out keeps its current value; ``None`` undoes what ``configure`` set for it, so
    the environment (or the default) applies again. :func:`reset_configuration` undoes everything.

    Example:
        >>> configure(base_url="http://127.0.0.1:8000/v1", model="llava-v1.6-34b")
        >>> load_settings({}).base_url
        'http://127.0.0.1:8000/v1'
        >>> configure(base_url=None)  # back to the default: the embedded practice server
        >>> load_settings({}).base_url is None, load_settings({}).model
        (True, 'llava-v1.6-34b')
        >>> reset_configuration()
    """
    __tracebackhide__ = True
    given = {"base_url": base_url, "api_key": api_key, "model": model, "timeout": timeout,
             "max_seconds": max_seconds}
    updates: dict[str, object] = {}
    forget: list[str] = []
    for name, value in given.items():
        if value is UNCHANGED:
            continue
        if value is None:
            forget.append(name)
        else:
            updates[name] = _FIELDS[name].check(value, f"configure({name})")
    with _lock:
        for name in forget:
            _overrides.pop(name, None)
        _overrides.update(updates)


def reset_configuration() -> None:
    """Forget everything :func:`configure` set; the environment applies again.

    Example:
        >>> reset_configuration()
    """
    with _lock:
        _overrides.clear()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve the settings now: :func:`configure` first, then the environment, then defaults.

    Example:
        >>> load_settings({"LABKIT_BASE_URL": "http://lab:8008/api/v1/"}).base_url
        'http://lab:8008/api/v1'
    """
    __tracebackhide__ = True
    with _lock:
        overrides = dict(_overrides)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, spec in _FIELDS.items():
        variables = spec.variables
        if name == "api_key" and sources["base_url"] not in ("OPENAI_BASE_URL", _(_FIELDS["base_url"].unset)):
            # OPENAI_API_KEY goes only where OPENAI_BASE_URL points: a JupyterHub may set a real OpenAI
            # key for other tools, and it must not be sent to a course backend that LABKIT_BASE_URL names.
            variables = variables[:1]
        if name in overrides:
            values[name], sources[name] = overrides[name], "configure()"
            continue
        values[name], sources[name] = spec.default, _(spec.unset)  # in the language labkit speaks
        for variable in variables:
            raw = (os.environ if env is None else env).get(variable, "").strip()
            if raw:
                values[name], sources[name] = spec.check(raw, variable), variable
                break
    return Settings(**values, sources=sources)
