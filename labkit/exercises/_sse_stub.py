"""A tiny stand-in backend for lesson 01's self-check: it streams prepared SSE bytes, exactly as
written (split where the case says, even inside a UTF-8 character), and records each request.

It is no practice server: it answers one scripted stream per case, so the check knows what the
student's reader must return whatever backend the course is configured with.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Scripted", "serve_script"]


@dataclass
class Scripted:
    """One case: the byte pieces to send (each written and flushed on its own), and what came in;
    ``silence``: seconds without a byte after the first piece (a busy model before its first token)."""

    pieces: list[bytes]
    requests: list[dict[str, Any]] = field(default_factory=list)
    silence: float = 0.0


def _handler(script: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_unreadable": raw[:200].decode("utf-8", "replace")}
            script.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if self.path != "/v1/chat/completions":  # as a real backend: /v1//chat/completions is no route
                self._json(404, {"object": "error", "message": f"no route {self.path}", "code": 40400})
                return
            if not isinstance(body, dict) or body.get("stream") is not True:
                self._json(400, {"object": "error", "code": 40301,
                                 "message": "Only streaming requests are supported: send \"stream\": true"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n, piece in enumerate(script.pieces):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(script.silence if n == 0 and script.silence else 0.002)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up early (a reader that stops at ``[DONE]``, or crashes) is no error of the
    stand-in's: nothing is printed above the check's verdict."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


@contextmanager
def serve_script(script: Scripted) -> Iterator[str]:
    """Serve ``script`` on a free loopback port for a ``with`` block; yields the base URL (``…/v1``).

    Example:
        >>> with serve_script(Scripted([b"data: [DONE]\\n\\n"])) as url:
        ...     url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        True
    """
    server = _QuietServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
