"""How long labkit.chat waits on a broken backend with LABKIT_TIMEOUT=3, beside the figures of issue 10
(item 5) and issue 17 (item 3) measured before the fixes, and the peak memory of a 200 MB error body
(issue 17 item 7). Each case is a real socket or a tiny real HTTP server on loopback.

Run: .venv/bin/python benchmarks/bench_client_waits.py
"""

from __future__ import annotations

import http.server
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import labkit

TIMEOUT = 3.0
MAX_SECONDS = 5.0  # LABKIT_MAX_SECONDS for the endless answer
BEFORE = {"accepts, never answers": 10.3, "connection never completes": 31.3, "keep-alive comments only": 20.0,
          "429 Retry-After: 60": 60.0, "headers trickle, 1 byte/s": 101.0, "500 body trickles, 1 byte/s": 101.0,
          f"endless answer, MAX_SECONDS={MAX_SECONDS:g}": float("inf")}
ERROR_BODY_MB = 200
PEAK_BEFORE_MB = 732.0


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


def trickled_headers(h: http.server.BaseHTTPRequestHandler) -> None:
    h.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for byte in b"x-slow: " + b"a" * 200:  # one byte a second, for minutes
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        time.sleep(1)


def trickled_500(h: http.server.BaseHTTPRequestHandler) -> None:
    body = b"Internal Server Error: " + b"." * 200
    h.send_response(500)
    h.send_header("content-type", "text/plain")
    h.send_header("content-length", str(len(body)))
    h.end_headers()
    for byte in body:
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        time.sleep(1)


def endless_answer(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("content-type", "text/event-stream")
    h.send_header("connection", "close")
    h.end_headers()
    h.wfile.write(b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n')
    while True:
        h.wfile.write(b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":" word"}}]}\n\n')
        h.wfile.flush()
        time.sleep(0.02)


def huge_error(h: http.server.BaseHTTPRequestHandler) -> None:
    piece = b"x" * (1 << 20)
    h.send_response(500)
    h.send_header("content-type", "text/plain")
    h.send_header("content-length", str(ERROR_BODY_MB << 20))
    h.end_headers()
    for _ in range(ERROR_BODY_MB):
        h.wfile.write(piece)


def peak_memory_case() -> None:
    """In a fresh process: the peak RSS growth while labkit.chat meets a 200 MB error body."""
    with http_server(huge_error) as base:
        labkit.configure(base_url=base, timeout=30)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            labkit.chat("Hi", display=False)
        except labkit.LabkitError as exc:
            outcome = f"{type(exc).__name__}: {str(exc)[:70]}…"
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{after / 1024:.0f} {(after - before) / 1024:.1f} {outcome}")


def main() -> None:
    if sys.argv[1:] == ["--peak-memory-case"]:
        peak_memory_case()
        return
    cases = {
        "accepts, never answers": silent_port,
        "connection never completes": full_backlog,
        "keep-alive comments only": lambda: http_server(keep_alives),
        "429 Retry-After: 60": lambda: http_server(rate_limited),
        "headers trickle, 1 byte/s": lambda: http_server(trickled_headers),
        "500 body trickles, 1 byte/s": lambda: http_server(trickled_500),
        f"endless answer, MAX_SECONDS={MAX_SECONDS:g}": lambda: http_server(endless_answer),
    }
    print(f"labkit.chat with LABKIT_TIMEOUT={TIMEOUT:g}: seconds until the error (before the fix → now)")
    for name, make in cases.items():
        with make() as base:
            labkit.configure(base_url=base, timeout=TIMEOUT, max_seconds=MAX_SECONDS if "endless" in name else None)
            started = time.perf_counter()
            try:
                labkit.chat("Hi", display=False)
                outcome = "no error!"
            except labkit.LabkitError as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:90]}…"
            took = time.perf_counter() - started
        goal = MAX_SECONDS if "endless" in name else TIMEOUT
        print(f"  {name:32s} {BEFORE[name]:6.1f} s → {took:5.2f} s (goal ≤ {goal + 1:g} s)   {outcome}")
    labkit.reset_configuration()
    out = subprocess.run([sys.executable, __file__, "--peak-memory-case"], capture_output=True, text=True,
                         timeout=300).stdout.split(maxsplit=2)
    print(f"a {ERROR_BODY_MB} MB error body: peak RSS {PEAK_BEFORE_MB:.0f} MB before the fix → {out[0]} MB now "
          f"(+{out[1]} MB during the call; goal: the body is not held, growth ≤ 20 MB)   {out[2]}")


if __name__ == "__main__":
    main()
