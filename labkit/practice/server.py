"""Running the practice server: in a background thread (tests, a private embedded default, the shared
server's process: :mod:`labkit.practice.shared`) or in the foreground (``labkit practice``). Always
uvicorn, a real ASGI server; nothing starts on import."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import uvicorn

from .app import DropConnection, create_app
from .config import PracticeConfig
from .connections import MAX_HEADER_BYTES, connection_ceiling, guarded_protocol

__all__ = ["PracticeServer", "serve_in_thread", "run_forever"]


class _QuietDrops(logging.Filter):
    """Injected connection drops are on purpose: keep their tracebacks out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        seen: list[BaseException] = []
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None and len(seen) < 10:
            if isinstance(exc, DropConnection):
                return False
            seen.append(exc)
            inner = getattr(exc, "exceptions", None)
            exc = exc.__cause__ or exc.__context__ or (inner[0] if inner else None)
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


class PracticeServer:
    """A practice server on a loopback port, served by uvicorn in a daemon thread.

    Example:
        >>> server = PracticeServer(PracticeConfig(fast=True)).start()
        >>> server.base_url.startswith("http://127.0.0.1:")
        True
        >>> server.stop()
    """

    def __init__(self, config: PracticeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 wrap: Callable[[Any], Any] | None = None) -> None:
        self.config = config or PracticeConfig.from_env()
        self.host = host
        self.port = port
        self._wrap = wrap  # ASGI middleware around the app (the shared server's)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` (the server also answers under ``/api/v1``)."""
        path = self.config.base_paths[0].rstrip("/") if self.config.base_paths else ""
        return f"http://{self.host}:{self.port}{path}"

    def start(self, timeout: float = 10.0) -> "PracticeServer":
        """Bind the port, start serving, and return once requests are answered."""
        _install_log_filter()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"cannot listen on {self.host}:{self.port} ({exc.strerror}): choose another port, "
                               "or port=0 for a free one") from None
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.config, log_level="warning", wrap=self._wrap))
        # uvicorn installs no signal handlers outside the main thread: Ctrl-C stays the notebook's.
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name=f"labkit-practice-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError(f"the practice server did not start on {self.host}:{self.port} within "
                                   f"{timeout:g} s: see the log above, or run `labkit practice` to see why")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and wait for the thread (open streams are cut)."""
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> "PracticeServer":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serve_in_thread(config: PracticeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                    **options: object) -> Iterator[str]:
    """Run a practice server for the duration of a ``with`` block; yields its base URL.

    ``options`` are :class:`PracticeConfig` fields (``dialect="vllm"``, ``fast=True``, …), applied on top
    of ``config`` (or of the ``LABKIT_PRACTICE_*`` environment when no config is given). It binds
    127.0.0.1 on a free port unless told otherwise.

    Example:
        >>> with serve_in_thread(fast=True) as base_url:
        ...     base_url.endswith("/v1")
        True
    """
    config = PracticeConfig.from_env(**options) if config is None else replace(config, **options)  # type: ignore[arg-type]
    with PracticeServer(config, host=host, port=port) as server:
        yield server.base_url


def run_forever(config: PracticeConfig, host: str = "127.0.0.1", port: int = 8008) -> None:
    """Serve in the foreground until Ctrl-C (what ``labkit practice`` runs).

    Example:
        >>> run_forever(PracticeConfig(), port=8008)  # doctest: +SKIP
    """
    _install_log_filter()
    uvicorn.Server(_uvicorn_config(config, log_level="info", host=host, port=port, own_process=True)).run()


def _uvicorn_config(config: PracticeConfig, *, log_level: str, own_process: bool = False,
                    wrap: Callable[[Any], Any] | None = None, **where: object) -> uvicorn.Config:
    """uvicorn settings: idle keep-alive timeout as vLLM and FastChat have it (5 s), header and
    whole-body deadlines, a header size limit, and a connection limit with a share per client address
    that leaves room for real requests and always answers /health."""
    ceiling = connection_ceiling(config.max_connections, raise_soft_limit=own_process)
    share = config.max_connections_per_client
    protocol = guarded_protocol(header_timeout=config.header_timeout, body_timeout=config.body_timeout,
                                max_connections=ceiling, max_per_client=min(share, ceiling) if share else None)
    app = create_app(config)
    return uvicorn.Config(wrap(app) if wrap else app, log_level=log_level, access_log=False, lifespan="off",
                          http=protocol, timeout_keep_alive=max(1, round(config.keep_alive_timeout)),
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES, backlog=2048,
                          **where)  # type: ignore[arg-type]
