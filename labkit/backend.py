"""Where requests go: the embedded practice server (started once, on first use) and a cache of
configured ``openai.OpenAI`` clients. :mod:`labkit.config` holds only the settings.

Example:
    >>> from labkit.config import Settings
    >>> c = client(Settings(base_url="http://127.0.0.1:8008/api/v1"))
    >>> str(c.base_url)
    'http://127.0.0.1:8008/api/v1/'
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

import openai

from .config import COURSE_URL_EXAMPLE, PLACEHOLDER_KEY, Secret, Settings, load_settings
from .errors import BackendUnreachable
from .i18n import _
from .transport import install

__all__ = ["CONNECT_TIMEOUT", "client", "connect_timeout", "embedded_base_url", "resolve_base_url"]

CONNECT_TIMEOUT = 10.0  # seconds; never more than the configured timeout

_lock = threading.Lock()
_embedded_url: str | None = None
_clients: dict[tuple[str, Secret, float, int], openai.OpenAI] = {}


def embedded_base_url() -> str:
    """Start the embedded practice server (the first call only) and return its base URL; the first
    call also prints one line saying so. A failed start raises :class:`labkit.BackendUnreachable`.

    Example:
        >>> embedded_base_url() == embedded_base_url()  # doctest: +SKIP
        True
    """
    __tracebackhide__ = True
    global _embedded_url
    with _lock:
        stopped = None
        if _embedded_url is not None:
            if _listening(_embedded_url):
                return _embedded_url
            stopped, _embedded_url = _embedded_url, None  # the shared server ended (killed, or the machine slept)
        from .practice import start_embedded_server  # the one explicit call into the server

        try:
            _embedded_url = start_embedded_server()
        except Exception as exc:  # a busy port, a missing dependency: name it, say what to do
            raise BackendUnreachable(_(
                "No backend is configured and the built-in practice server could not start "
                "({error}). Run `labkit practice` in a terminal to see why, or set LABKIT_BASE_URL to "
                "the course backend's URL (e.g. {example}).").format(
                error=f"{exc.__class__.__name__}: {exc}", example=COURSE_URL_EXAMPLE)) from None
        from .display import notice

        if stopped is not None:
            notice(_("labkit: the practice server at {old} had stopped, so labkit started it again at {url}.").format(
                old=stopped, url=_embedded_url))
            return _embedded_url
        notice(  # news, not an error: stdout in a notebook, stderr in a terminal
            _("labkit: no backend configured, so the built-in practice server answers at {url} (simulated "
              "answers, no GPU needed). For the course backend set LABKIT_BASE_URL={example}.").format(
                url=_embedded_url, example=COURSE_URL_EXAMPLE))
        return _embedded_url


def _listening(url: str) -> bool:
    """Whether something still accepts connections at ``url``'s host and port (a loopback connect,
    well under a millisecond): the shared practice server outlives kernels, but it can be killed."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=1.0):
            return True
    except OSError:
        return False


def resolve_base_url(settings: Settings) -> str:
    """The base URL requests go to: the configured one, or the embedded practice server's.

    Example:
        >>> resolve_base_url(Settings(base_url="http://lab:8008/api/v1"))
        'http://lab:8008/api/v1'
    """
    __tracebackhide__ = True
    return settings.base_url or embedded_base_url()


def connect_timeout(settings: Settings) -> float:
    """Seconds to wait for a connection: 10, or the configured timeout when that is shorter.

    Example:
        >>> connect_timeout(Settings(timeout=3)), connect_timeout(Settings())
        (3, 10.0)
    """
    return min(CONNECT_TIMEOUT, settings.timeout)


def client(settings: Settings | None = None, *, max_retries: int = 0) -> openai.OpenAI:
    """A configured ``openai.OpenAI`` client for the course backend (or the practice server).

    With no base URL configured it starts the embedded practice server (once per process) and
    prints one line saying so. ``settings.timeout`` bounds each wait: connecting (at most 10 s) and
    each read. ``max_retries`` is 0 by default: :func:`labkit.chat` retries on its own, within the
    timeout and saying so, where the openai client would retry silently. Clients are reused per
    (URL, key, timeout, retries): building one costs ~20 ms, and a shared one keeps its connections.
    Its HTTP layer bounds each read by the deadline of the request being made (headers and error
    bodies included) and reads error bodies only up to a bound (:mod:`labkit.transport`).

    Example:
        >>> c = client(Settings(base_url="http://127.0.0.1:8008/api/v1"))
        >>> c is client(Settings(base_url="http://127.0.0.1:8008/api/v1"))
        True
    """
    __tracebackhide__ = True
    settings = settings or load_settings()
    base_url = resolve_base_url(settings)
    key = Secret(settings.api_key or PLACEHOLDER_KEY)
    cache_key = (base_url, key, settings.timeout, max_retries)
    with _lock:
        made = _clients.get(cache_key)
        if made is None:
            made = _clients[cache_key] = openai.OpenAI(
                base_url=base_url,
                api_key=key.reveal(),  # the one place the key is unwrapped
                timeout=openai.Timeout(settings.timeout, connect=connect_timeout(settings)),
                max_retries=max_retries,
            )
            install(made)
        return made
