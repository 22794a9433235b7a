"""Settings from the environment, and a configured OpenAI client.

Variables (the first one set wins):

===================  ==========================================  ==========================
setting              variables                                   default
===================  ==========================================  ==========================
base URL             ``LABKIT_BASE_URL``, ``OPENAI_BASE_URL``    the embedded practice server
API key              ``LABKIT_API_KEY``, ``OPENAI_API_KEY``      ``dummy_key`` (the course backend takes any key)
model                ``LABKIT_MODEL``                            ``llava-v1.6-34b``
timeout (seconds)    ``LABKIT_TIMEOUT``                          ``120`` (the longest wait for the next chunk)
===================  ==========================================  ==========================

:func:`configure` overrides them for this Python process (used by ``labkit.serve`` after it starts a
local vLLM). ``OPENAI_API_KEY`` is used only with ``OPENAI_BASE_URL`` (or no URL), never sent to a
``LABKIT_BASE_URL``. A key is never printed, logged or written: :class:`Settings` masks it in its repr.
"""

from __future__ import annotations

# `__tracebackhide__ = True` in a function makes IPython leave its frame out of tracebacks, so a
# student sees their own line and labkit's message, not labkit's internals.

import math
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import openai

from .errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "Settings",
    "configure",
    "reset_configuration",
    "load_settings",
    "mask_key",
    "resolve_base_url",
    "client",
]

DEFAULT_MODEL = "llava-v1.6-34b"
DEFAULT_TIMEOUT = 120.0
PLACEHOLDER_KEY = "dummy_key"
COURSE_URL_EXAMPLE = "http://HOST:8008/api/v1"

_BASE_URL_VARS = ("LABKIT_BASE_URL", "OPENAI_BASE_URL")
_KEY_VARS = ("LABKIT_API_KEY", "OPENAI_API_KEY")

_overrides: dict[str, object] = {}
_lock = threading.Lock()
_embedded_url: str | None = None


def mask_key(key: str | None) -> str:
    """Show enough of a key to recognise it, never the key itself.

    Example:
        >>> mask_key("sk-course-1234567890")
        'sk-…7890 (20 chars)'
        >>> mask_key(None)
        '(not set)'
    """
    if not key:
        return "(not set)"
    if len(key) <= 8:
        return f"{'*' * len(key)} ({len(key)} chars)"
    return f"{key[:3]}…{key[-4:]} ({len(key)} chars)"


@dataclass(frozen=True)
class Settings:
    """Where labkit sends requests, resolved from :func:`configure` and the environment.

    ``base_url`` is ``None`` when nothing is configured (then :func:`client` starts the embedded
    practice server). ``sources`` says where each value came from, for ``labkit doctor``.

    Example:
        >>> s = Settings(base_url="http://localhost:8008/api/v1", api_key="secret-key-123")
        >>> "secret-key-123" in repr(s)
        False
    """

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        return (
            f"Settings(base_url={self.base_url!r}, api_key={mask_key(self.api_key)!r}, "
            f"model={self.model!r}, timeout={self.timeout!r})"
        )


def _check_base_url(url: str, origin: str) -> str:
    __tracebackhide__ = True
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{origin}={url!r} is not an http(s) URL: set it to the backend's base URL, "
            f"for example {COURSE_URL_EXAMPLE} (the course backend) or http://127.0.0.1:8000/v1 (vLLM)."
        )
    if url.endswith("/chat/completions"):
        raise ConfigError(
            f"{origin}={url!r} includes the endpoint path: drop '/chat/completions' and set it to "
            f"{url[: -len('/chat/completions')]!r}; the client adds the endpoint itself."
        )
    return url


def _check_timeout(value: object, origin: str) -> float:
    __tracebackhide__ = True
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(
            f"{origin}={value!r} is not a positive number of seconds: set it to e.g. 120, or unset it."
        )
    return seconds


def configure(
    base_url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    timeout: float | None = None,
) -> None:
    """Override settings for this Python process, on top of the environment.

    Arguments left as ``None`` keep their current value. :func:`reset_configuration` undoes it.

    Example:
        >>> configure(base_url="http://127.0.0.1:8000/v1", model="llava-v1.6-34b")
        >>> load_settings().base_url
        'http://127.0.0.1:8000/v1'
        >>> reset_configuration()
    """
    updates: dict[str, object] = {}
    if base_url is not None:
        updates["base_url"] = _check_base_url(base_url, "configure(base_url)")
    if api_key is not None:
        updates["api_key"] = api_key
    if model is not None:
        if not model.strip():
            raise ConfigError("configure(model='') is empty: pass a model name such as 'llava-v1.6-34b'.")
        updates["model"] = model.strip()
    if timeout is not None:
        updates["timeout"] = _check_timeout(timeout, "configure(timeout)")
    with _lock:
        _overrides.update(updates)


def reset_configuration() -> None:
    """Forget everything :func:`configure` set; the environment applies again.

    Example:
        >>> reset_configuration()
    """
    with _lock:
        _overrides.clear()


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str | None, str]:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value, name
    return None, ""


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve the settings now: :func:`configure` first, then the environment, then defaults.

    Example:
        >>> load_settings({"LABKIT_BASE_URL": "http://lab:8008/api/v1/"}).base_url
        'http://lab:8008/api/v1'
    """
    __tracebackhide__ = True
    env = os.environ if env is None else env
    with _lock:
        overrides = dict(_overrides)
    sources: dict[str, str] = {}

    base_url, origin = _first(env, _BASE_URL_VARS)
    if "base_url" in overrides:
        base_url, origin = str(overrides["base_url"]), "configure()"
    elif base_url is not None:
        base_url = _check_base_url(base_url, origin)
    sources["base_url"] = origin or "not set: embedded practice server"

    # OPENAI_API_KEY goes only where OPENAI_BASE_URL points: a JupyterHub may set a real OpenAI key
    # for other tools, and it must not be sent to a course backend that LABKIT_BASE_URL names.
    key_vars = _KEY_VARS if sources["base_url"] in ("OPENAI_BASE_URL", "not set: embedded practice server") \
        else _KEY_VARS[:1]
    api_key, origin = _first(env, key_vars)
    if "api_key" in overrides:
        api_key, origin = str(overrides["api_key"]), "configure()"
    sources["api_key"] = origin or "not set"

    model, origin = _first(env, ("LABKIT_MODEL",))
    if "model" in overrides:
        model, origin = str(overrides["model"]), "configure()"
    sources["model"] = origin or "default"

    raw_timeout, origin = _first(env, ("LABKIT_TIMEOUT",))
    if "timeout" in overrides:
        timeout = float(overrides["timeout"])  # type: ignore[arg-type]
        origin = "configure()"
    elif raw_timeout is not None:
        timeout = _check_timeout(raw_timeout, origin)
    else:
        timeout = DEFAULT_TIMEOUT
    sources["timeout"] = origin or "default"

    return Settings(
        base_url=base_url,
        api_key=api_key,
        model=model or DEFAULT_MODEL,
        timeout=timeout,
        sources=sources,
    )


def _embedded_base_url() -> str:
    """Start the embedded practice server once per process and return its base URL."""
    global _embedded_url
    with _lock:
        if _embedded_url is None:
            from .practice import start_embedded_server  # the one explicit call into the server

            _embedded_url = start_embedded_server()
            from .display import in_jupyter

            print(
                f"labkit: no backend configured, so the built-in practice server answers at "
                f"{_embedded_url} (simulated answers, no GPU needed). For the course backend set "
                f"LABKIT_BASE_URL={COURSE_URL_EXAMPLE}.",
                # a notebook shows stderr as a red box: this is news, not an error
                file=sys.stdout if in_jupyter() else sys.stderr,
            )
        return _embedded_url


def resolve_base_url(settings: Settings) -> str:
    """The base URL requests go to: the configured one, or the embedded practice server's.

    Example:
        >>> resolve_base_url(Settings(base_url="http://lab:8008/api/v1"))
        'http://lab:8008/api/v1'
    """
    return settings.base_url or _embedded_base_url()


_clients: dict[tuple[str, str, float, int], openai.OpenAI] = {}


def client(settings: Settings | None = None, *, max_retries: int = 2) -> openai.OpenAI:
    """A configured ``openai.OpenAI`` client for the course backend (or the practice server).

    With no base URL configured it starts the embedded practice server (once per process) and
    prints one line saying so. ``settings.timeout`` bounds the wait for each chunk; connecting
    gives up after 10 seconds. Clients are reused per (URL, key, timeout, retries): building one
    costs ~20 ms, and a shared one keeps its connections open.

    Example:
        >>> c = client(Settings(base_url="http://127.0.0.1:8008/api/v1"))
        >>> str(c.base_url), c is client(Settings(base_url="http://127.0.0.1:8008/api/v1"))
        ('http://127.0.0.1:8008/api/v1/', True)
    """
    __tracebackhide__ = True
    settings = settings or load_settings()
    base_url = resolve_base_url(settings)
    key = (base_url, settings.api_key or PLACEHOLDER_KEY, settings.timeout, max_retries)
    with _lock:
        made = _clients.get(key)
        if made is None:
            made = _clients[key] = openai.OpenAI(
                base_url=base_url,
                api_key=key[1],
                timeout=openai.Timeout(settings.timeout, connect=10.0),
                max_retries=max_retries,
            )
        return made
