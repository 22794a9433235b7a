"""Servers that misbehave on purpose, written with raw sockets (no HTTP library between the test and
the bytes): trickled headers, a trickled or huge error body, an answer that never ends, requests that
cannot be encoded. The real openai client inside labkit talks to them (issue 16 item 4, issue 17
items 3 and 7)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import labkit
from labkit.transport import ERROR_BODY_LIMIT

TIMEOUT = 1.0
SLACK = 4.0  # seconds a loaded machine may add; the bugs held for minutes or forever


class Conn:
    """One accepted connection: the request was read; ``sent`` counts the bytes written to it."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock, self.stop, self.sent = sock, stop, 0

    def send(self, data: bytes) -> bool:
        """Write ``data``; False once the client has gone (or the test ended)."""
        if self.stop.is_set():
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        self.sent += len(data)
        return True

    def trickle(self, data: bytes, every: float) -> None:
        """One byte every ``every`` seconds, until the client goes."""
        for i in range(len(data)):
            if not self.send(data[i:i + 1]) or self.stop.wait(every):
                return


@contextmanager
def raw_server(handle: Callable[[Conn], None]) -> Iterator[tuple[str, list[Conn]]]:
    """A listening socket on a free port; each connection's request is read, then ``handle`` answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    conns: list[Conn] = []

    def serve(sock: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                return
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            piece = sock.recv(65536)
            if not piece:
                return
            body += piece
        conn = Conn(sock, stop)
        conns.append(conn)
        try:
            handle(conn)
        finally:
            sock.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                sock, _addr = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1", conns
    finally:
        stop.set()
        listener.close()


def event(delta: dict[str, object], finish: str | None = None) -> bytes:
    chunk = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
               + event({"role": "assistant"}))


def timed(call: Callable[[], object]) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(labkit.LabkitError) as info:
        call()
    return info.value, time.monotonic() - started


# --- waits bounded by the timeout (issue 17 item 3) -------------------------------------------------------

def test_trickled_response_headers_end_at_the_timeout() -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"x-padding: " + b"a" * 500 + b"\r\n\r\n"
    with raw_server(lambda c: c.trickle(head, 0.1)) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        error, took = timed(lambda: labkit.chat("Hi", display=False))
    assert isinstance(error, labkit.BackendUnreachable)
    assert "headers were still arriving after 1 s" in str(error) and "Nothing is listening" not in str(error)
    assert took < TIMEOUT + SLACK


def test_doctor_with_trickled_headers_ends_at_the_timeout() -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"x-padding: " + b"a" * 500 + b"\r\n\r\n"
    with raw_server(lambda c: c.trickle(head, 0.1)) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        started = time.monotonic()
        report = labkit.doctor()
        took = time.monotonic() - started
    assert not report.ok and took < TIMEOUT + SLACK, (took, report)


def test_a_500_whose_body_trickles_ends_at_the_timeout_and_says_what_came() -> None:
    body = b"Internal error: the worker is restarting" + b"." * 500
    head = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n")

    def handle(c: Conn) -> None:
        c.send(head + body[:20])
        c.trickle(body[20:], 0.1)

    with raw_server(handle) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        error, took = timed(lambda: labkit.chat("Hi", display=False))
    message = str(error)
    assert type(error) is labkit.BackendError and error.status == 500
    assert "HTTP 500" in message and "Internal error: the worker" in message
    assert "still arriving after 1 s" in message and "Nothing is listening" not in message
    assert took < TIMEOUT + SLACK


def endless(c: Conn) -> None:
    c.send(STREAM_HEAD)
    while c.send(event({"content": " word"})) and not c.stop.wait(0.02):
        pass


def test_an_endless_answer_stops_at_its_deadline_with_the_text_so_far() -> None:
    with raw_server(endless) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        error, took = timed(lambda: labkit.chat("Hi", display=False, deadline=1.5))
    assert isinstance(error, labkit.StreamError) and error.reason == "deadline"
    assert error.partial_text.strip().startswith("word word")
    assert "deadline of 1.5 s (deadline)" in str(error) and "max_tokens" in str(error)
    assert 1.4 < took < 1.5 + SLACK


def test_labkit_max_seconds_bounds_every_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_MAX_SECONDS", "1")
    with raw_server(endless) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        error, took = timed(lambda: labkit.chat("Hi", display=False))
    assert isinstance(error, labkit.StreamError) and error.reason == "deadline"
    assert "(LABKIT_MAX_SECONDS)" in str(error)
    assert took < 1 + SLACK


def test_a_deadline_also_bounds_the_wait_for_the_first_word() -> None:
    def silent_stream(c: Conn) -> None:  # headers, then keep-alive comments within the timeout
        c.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        while c.send(b": ping\n\n") and not c.stop.wait(0.2):
            pass

    with raw_server(silent_stream) as (base, _conns):
        labkit.configure(base_url=base, timeout=30)
        error, took = timed(lambda: labkit.chat("Hi", display=False, deadline=1))
    assert isinstance(error, labkit.StreamError) and error.reason == "deadline"
    assert "waiting for the first word" in str(error)
    assert took < 1 + SLACK


@pytest.mark.parametrize("how", ["configure(max_seconds=1)", "run_batch(deadline=1)"])
def test_run_batch_applies_the_deadline_to_each_item(how: str, tmp_path: Path) -> None:
    with raw_server(endless) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT, max_seconds=1 if how.startswith("configure") else None)
        options = {"deadline": 1} if how.startswith("run_batch") else {}
        items = [labkit.BatchItem(f"q{i}", "Hi") for i in range(3)]
        started = time.monotonic()
        result = labkit.run_batch(items, tmp_path / "out.jsonl", concurrency=3, progress=False, **options)
        took = time.monotonic() - started
    assert result.failed == 3
    for record in result.records.values():
        assert record["error_type"] == "StreamError" and "deadline of 1 s" in record["error"]
        assert record["partial"].strip().startswith("word")
    assert took < 1 + SLACK


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "soon"])
def test_a_bad_max_seconds_is_named(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_MAX_SECONDS", bad)
    with pytest.raises(labkit.ConfigError, match="LABKIT_MAX_SECONDS"):
        labkit.load_settings()


@pytest.mark.parametrize("bad", [0, -2, math.inf, "60", True])
def test_a_bad_deadline_argument_is_named(bad: object) -> None:
    with pytest.raises(labkit.UsageError, match="deadline="):
        labkit.stream_chat("Hi", deadline=bad)  # type: ignore[arg-type]


# --- error bodies read up to a bound (issue 17 item 7) ----------------------------------------------------

def test_a_huge_error_body_is_read_only_up_to_a_bound() -> None:
    size = 200 * 1024 * 1024
    piece = b"x" * 65536

    def handle(c: Conn) -> None:
        c.send(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: "
               + str(size).encode() + b"\r\n\r\nworker failed: " + piece)
        while c.sent < size and c.send(piece):
            pass

    with raw_server(handle) as (base, conns):
        labkit.configure(base_url=base, timeout=10)
        error, _took = timed(lambda: labkit.chat("Hi", display=False))
        time.sleep(0.2)
        sent = conns[0].sent
    assert type(error) is labkit.BackendError and error.status == 500
    assert "worker failed" in str(error) and f"only its first {ERROR_BODY_LIMIT:,} bytes were read" in str(error)
    assert sent < 16 * 1024 * 1024, f"the client took {sent:,} bytes of a 200 MB error body"


# --- requests that cannot be encoded (issue 16 item 4) ----------------------------------------------------

@pytest.mark.parametrize(("prompt", "options", "named"), [
    ("Hi", {"temperature": math.nan}, "temperature is nan"),
    ("Hi", {"top_p": math.inf}, "top_p is inf"),
    ("Hi \ud83d there", {}, "lone surrogate '\\ud83d' at position 3"),
    ([{"role": "user", "content": [{"type": "text", "text": "ok \udc80"}]}], {},
     "messages[0]['content'][0]['text'] holds a lone surrogate"),
])
def test_a_request_that_cannot_be_encoded_is_a_usage_error_naming_the_value(
        prompt: object, options: dict[str, object], named: str) -> None:
    with raw_server(lambda c: None) as (base, conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        with pytest.raises(labkit.UsageError) as info:
            labkit.chat(prompt, display=False, **options)  # type: ignore[arg-type]
        time.sleep(0.1)
    assert named in str(info.value) and "Nothing was sent" in str(info.value)
    assert "Talking to" not in str(info.value)
    assert conns == [], "nothing reached the server"


# --- what came back, said in labkit's words (issue 17 item 6) ---------------------------------------------

def not_json(c: Conn) -> None:
    c.send(STREAM_HEAD + event({"content": "Hello"}) + b"data: <html>proxy error</html>\n\n"
           + event({}, "stop") + b"data: [DONE]\n\n")


def test_an_event_that_is_not_json_is_a_stream_error_quoting_it(tmp_path: Path) -> None:
    with raw_server(not_json) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        with pytest.raises(labkit.StreamError) as info:
            labkit.chat("Hi", display=False)
        result = labkit.run_batch([labkit.BatchItem("a", "Hi")], tmp_path / "out.jsonl", progress=False)
    assert info.value.reason == "malformed" and info.value.partial_text == "Hello"
    assert "not JSON: '<html>proxy error</html>'" in str(info.value) and "LABKIT_BASE_URL" in str(info.value)
    record = result.records["a"]
    assert record["error_type"] == "StreamError" and "not JSON" in record["error"]


@pytest.mark.parametrize("status", [200, 500])
def test_garbled_gzip_is_named_not_called_a_dropped_connection(status: int) -> None:
    reason = b"OK" if status == 200 else b"Internal Server Error"
    kind = b"text/event-stream" if status == 200 else b"application/json"
    body = b"this is not gzip at all" * 4

    def handle(c: Conn) -> None:
        c.send(b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s"
               % (status, reason, kind, len(body), body))

    with raw_server(handle) as (base, conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        with pytest.raises(labkit.BackendError) as info:
            labkit.chat("Hi", display=False)
    message = str(info.value)
    assert "Content-Encoding: gzip" in message and "garble" in message
    assert "dropped" not in message and "Nothing is listening" not in message
    assert len(conns) == 1, "a garbled answer is not asked again"


def test_an_error_body_cut_by_a_dropped_connection_says_so() -> None:
    def handle(c: Conn) -> None:
        c.send(b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 5000\r\n\r\n"
               b"upstream worker crashed")  # then the connection closes, 4,977 bytes short

    with raw_server(handle) as (base, _conns):
        labkit.configure(base_url=base, timeout=TIMEOUT)
        error, _took = timed(lambda: labkit.chat("Hi", display=False))
    message = str(error)
    assert error.status == 502 and "upstream worker crashed" in message  # type: ignore[attr-defined]
    assert "the connection ended before the rest of the body came" in message and "Nothing is listening" not in message


@pytest.mark.parametrize(("status", "kind"), [(400, "BadRequestError"), (401, "AuthenticationError"),
                                              (429, "RateLimitError"), (503, "InternalServerError")])
def test_labkit_client_still_raises_the_openai_error_for_each_status(status: int, kind: str) -> None:
    """labkit.client() reads error bodies only up to a bound, but code that catches openai's own classes
    around it keeps working."""
    import openai

    body = b'{"object": "error", "message": "refused here", "code": 40001}'

    def handle(c: Conn) -> None:
        c.send(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
               % (status, len(body), body))

    with raw_server(handle) as (base, _conns):
        client = labkit.client(labkit.Settings(base_url=base, timeout=TIMEOUT))
        with pytest.raises(getattr(openai, kind)) as info:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert info.value.status_code == status and info.value.body == json.loads(body)


# --- a finished stream's connection is kept for the next request -----------------------------------------

def test_a_finished_stream_leaves_its_connection_for_the_next_request() -> None:
    """openai's client stops reading at [DONE], before the chunked body's last bytes, so the connection
    used to be closed and a new one opened for every answer."""
    accepted: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(sock: socket.socket) -> None:
        with sock:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    piece = sock.recv(65536)
                    if not piece:
                        return
                    data += piece
                head, _, data = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(data) < length:
                    data += sock.recv(65536)
                data = data[length:]
                sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                for block in (event({"role": "assistant"}), event({"content": "Hi"}), event({}, "stop"),
                              b"data: [DONE]\n\n"):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
                time.sleep(0.05)  # the body's end comes after [DONE], in a packet of its own
                sock.sendall(b"0\r\n\r\n")

    def accept() -> None:
        while True:
            try:
                sock, _addr = listener.accept()
            except OSError:
                return
            accepted.append(1)
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        labkit.configure(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1", timeout=TIMEOUT)
        texts = [labkit.chat("Hi", display=False).text for _ in range(3)]
    finally:
        listener.close()
    assert texts == ["Hi", "Hi", "Hi"]
    assert len(accepted) == 1, f"{len(accepted)} connections for 3 answers"


def test_a_server_that_holds_the_body_open_after_done_is_not_waited_for() -> None:
    def handle(c: Conn) -> None:
        c.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for block in (event({"role": "assistant"}), event({"content": "Hi"}), event({}, "stop"), b"data: [DONE]\n\n"):
            c.send(b"%x\r\n%s\r\n" % (len(block), block))
        c.stop.wait(30)  # the body never ends

    with raw_server(handle) as (base, _conns):
        labkit.configure(base_url=base, timeout=10)
        started = time.monotonic()
        reply = labkit.chat("Hi", display=False)
        took = time.monotonic() - started
    assert reply.text == "Hi" and took < 0.5 + SLACK
