"""How long labkit.chat waits on a broken backend with LABKIT_TIMEOUT=3, beside the figures of issue 10
(item 5) measured before the fix. Each case is a real socket or a tiny real HTTP server on loopback.

Run: .venv/bin/python benchmarks/bench_client_waits.py
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import labkit

TIMEOUT = 3.0
BEFORE = {"accepts, never answers": 10.3, "connection never completes": 31.3, "keep-alive comments only": 20.0,
          "429 Retry-After: 60": 60.0}


@contextmanager
def http_server(handle: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                handle(self)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_port() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@contextmanager
def full_backlog() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(s.getsockname())
            fillers.append(f)
        time.sleep(0.2)
        try:
            yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        finally:
            for f in fillers:
                f.close()


def keep_alives(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("content-type", "text/event-stream")
    h.send_header("connection", "close")
    h.end_headers()
    for _ in range(100):  # 20 s of comments, never an event
        h.wfile.write(b": keep-alive\n\n")
        h.wfile.flush()
        time.sleep(0.2)


def rate_limited(h: http.server.BaseHTTPRequestHandler) -> None:
    body = b'{"object":"error","message":"Too many requests","code":429}'
    h.send_response(429)
    h.send_header("content-type", "application/json")
    h.send_header("retry-after", "60")
    h.send_header("content-length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def main() -> None:
    cases = {
        "accepts, never answers": silent_port,
        "connection never completes": full_backlog,
        "keep-alive comments only": lambda: http_server(keep_alives),
        "429 Retry-After: 60": lambda: http_server(rate_limited),
    }
    print(f"labkit.chat with LABKIT_TIMEOUT={TIMEOUT:g}: seconds until the error (before the fix → now)")
    for name, make in cases.items():
        with make() as base:
            labkit.configure(base_url=base, timeout=TIMEOUT)
            started = time.perf_counter()
            try:
                labkit.chat("Hi", display=False)
                outcome = "no error!"
            except labkit.LabkitError as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:90]}…"
            took = time.perf_counter() - started
        print(f"  {name:28s} {BEFORE[name]:6.1f} s → {took:5.2f} s   {outcome}")
    labkit.reset_configuration()


if __name__ == "__main__":
    main()
