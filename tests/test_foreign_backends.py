"""Backends that are not a completion stream, or that make the client wait: tiny real HTTP servers
(http.server in a thread) serve the bodies a login portal, a wrong port or a broken proxy sends,
and the real openai client inside labkit talks to them."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

import labkit
from labkit.checkup import doctor
from labkit.cli import main

LOGIN_PAGE = ("<!DOCTYPE html><html><head><title>Campus Network Login</title></head><body>"
              + "<p>Please log in to use the campus network.</p>" * 80 + "</body></html>")

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def tiny_server(handle: Handler) -> Iterator[str]:
    """A real HTTP server in a thread whose every request is answered by ``handle``."""

    class _Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            try:
                handle(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = _any

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def send(status: int, content_type: str, body: str, headers: dict[str, str] | None = None) -> Handler:
    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        data = body.encode()
        h.send_response(status)
        h.send_header("content-type", content_type)
        h.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)
    return handle


def sse(events: list[str], *, pause: float = 0.0, then_hold: float = 0.0) -> Handler:
    """An event stream of raw SSE blocks (``data: …`` or ``: comment``), closed at the end."""
    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream; charset=utf-8")
        h.send_header("connection", "close")
        h.end_headers()
        for block in events:
            h.wfile.write((block + "\n\n").encode())
            h.wfile.flush()
            time.sleep(pause)
        time.sleep(then_hold)
        h.close_connection = True
    return handle


def chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {"role": "assistant"}
    return "data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "model": "llava-v1.6-34b",
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


# --- item 1: nothing silent ---------------------------------------------------------------------


def test_an_html_login_page_is_named_not_returned_as_an_empty_answer() -> None:
    with tiny_server(send(200, "text/html; charset=utf-8", LOGIN_PAGE)) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.UnexpectedResponse) as info:
            labkit.chat("Hi", display=False)
    message = str(info.value)
    assert f"The server at {base} answered with an HTML page (<title>Campus Network Login</title>" in message
    assert "Please log in" not in message and len(message) < 600  # summarised, never pasted
    assert "LABKIT_BASE_URL" in message and info.value.status == 200


def test_a_json_page_is_named() -> None:
    with tiny_server(send(200, "application/json", json.dumps({"status": "ok", "service": "gateway"}))) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.UnexpectedResponse, match=r"answered with a JSON document \(\{\"status\": \"ok\""):
            labkit.chat("Hi", display=False)


def test_keep_alives_only_then_closed_is_not_an_empty_answer() -> None:
    with tiny_server(sse([": keep-alive"] * 3)) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.UnexpectedResponse, match="sent no answer events"):
            labkit.chat("Hi", display=False)


def test_a_stream_without_finish_reason_or_done_is_a_cut_answer() -> None:
    events = [chunk(), chunk("The cat"), chunk(" sits on")]  # then the proxy closes: no finish, no [DONE]
    with tiny_server(sse(events)) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.StreamError, match="ended without a finish reason") as info:
            labkit.chat("Hi", display=False)
    assert info.value.partial_text == "The cat sits on" and info.value.reason == "incomplete"


def test_a_finished_stream_without_done_is_a_whole_answer() -> None:
    with tiny_server(sse([chunk(), chunk("A cat."), chunk(None, "stop")])) as base:
        labkit.configure(base_url=base)
        reply = labkit.chat("Hi", display=False)
    assert (reply.text, reply.finish_reason) == ("A cat.", "stop")


def test_a_finished_stream_without_a_word_is_an_error_not_an_empty_answer() -> None:
    with tiny_server(sse([chunk(), chunk(None, "stop"), "data: [DONE]"])) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.StreamError, match=r"finished \(finish_reason 'stop'\) without an answer") as info:
            labkit.chat("Hi", display=False)
    assert (info.value.reason, info.value.finish_reason, info.value.partial_text) == ("empty", "stop", "")
    assert "sent no text at all" in str(info.value)


def test_an_answer_that_is_only_the_leaked_prefix_says_so() -> None:
    with tiny_server(sse([chunk(), chunk("assistant\n"), chunk(None, "length"), "data: [DONE]"])) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.StreamError, match="ended before its first word") as info:
            labkit.chat("Hi", display=False, max_tokens=1)
    assert info.value.finish_reason == "length" and "'assistant\\n'" in str(info.value)
    assert "max_tokens" in str(info.value)


def test_a_batch_records_an_empty_answer_as_failed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with tiny_server(sse([chunk(), chunk(None, "stop"), "data: [DONE]"])) as base:
        labkit.configure(base_url=base)
        results = labkit.run_batch([labkit.BatchItem(id="a", question="Hi")], tmp_path / "out.jsonl",
                                   progress=False)
    record = results.records["a"]
    assert results.failed == 1 and results.answered == 0
    assert "without an answer" in json.dumps(record, ensure_ascii=False), record


def test_labkit_chat_exits_non_zero_on_a_foreign_page(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with tiny_server(send(200, "text/html", LOGIN_PAGE)) as base:
        monkeypatch.setenv("LABKIT_BASE_URL", base)
        assert main(["chat", "Hi"]) == 2
    assert "Campus Network Login" in capsys.readouterr().err


def test_batch_records_foreign_and_cut_answers_as_failed_and_retries_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from labkit.batch import BatchItem, load_results, run_batch

    out = tmp_path / "answers.jsonl"
    items = [BatchItem("a", "Hi"), BatchItem("b", "Hello")]
    with tiny_server(sse([chunk(), chunk("half an")])) as base:
        labkit.configure(base_url=base)
        result = run_batch(items, out, progress=False)
    assert (result.answered, result.failed) == (0, 2)
    assert {r["status"] for r in load_results(out).values()} == {"error"}
    assert load_results(out)["a"]["partial"] == "half an"
    with tiny_server(send(200, "text/html", LOGIN_PAGE)) as base:
        labkit.configure(base_url=base)
        again = run_batch(items, out, progress=False)
    assert (again.skipped, again.failed) == (0, 2)  # asked again, failed again: never stored as ok
    assert load_results(out)["a"]["error_type"] == "UnexpectedResponse"
    with tiny_server(sse([chunk(), chunk("Fine."), chunk(None, "stop")])) as base:
        labkit.configure(base_url=base)
        assert run_batch(items, out, progress=False).answered == 2


# --- item 11: messages ----------------------------------------------------------------------------


def test_a_404_html_page_is_summarised() -> None:
    page = "<html><head><title>404 Not Found</title></head><body>" + "<p>nginx</p>" * 300 + "</body></html>"
    with tiny_server(send(404, "text/html", page)) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.BackendUnreachable) as info:
            labkit.chat("Hi", display=False)
    message = str(info.value)
    assert "HTTP 404: an HTML page (<title>404 Not Found</title>, 3,667 bytes)" in message
    assert "nginx" not in message and len(message) < 400


def test_doctor_against_an_html_backend_says_what_came_back() -> None:
    lines: list[str] = []
    with tiny_server(send(200, "text/html", LOGIN_PAGE)) as base:
        labkit.configure(base_url=base)
        report = doctor(echo=lines.append)
    assert not report.ok
    text = "\n".join(lines)
    assert "UnexpectedResponse" in text and "<title>Campus Network Login</title>" in text
    assert "AttributeError" not in text


def test_doctor_says_the_401_sentence_once() -> None:
    from labkit.practice import serve_in_thread

    lines: list[str] = []
    with serve_in_thread(fast=True, api_keys=("the-course-key",)) as base:
        labkit.configure(base_url=base, api_key="a-wrong-key-123")
        report = doctor(echo=lines.append)
    text = "\n".join(lines)
    assert not report.ok and text.count("refused the API key") == 1 and "LABKIT_API_KEY" in text
    assert "a-wrong-key-123" not in text


def test_vllm_range_wording_gets_the_specific_hint() -> None:
    body = {"error": {"message": "temperature must be in [0, 2], got 3.0.", "type": "BadRequestError",
                      "param": None, "code": 400}}
    with tiny_server(send(400, "application/json", json.dumps(body))) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.RequestRejected, match=r"got 3\.0\. Use max_tokens ≥ 1, 0 ≤ temperature ≤ 2"):
            labkit.chat("Hi", display=False, temperature=3)


# --- item 5: every wait bounded -------------------------------------------------------------------


def test_keep_alive_comments_do_not_extend_the_wait() -> None:
    forever = sse([chunk()] + [": keep-alive"] * 100, pause=0.2)  # 20 s of comments, never data
    with tiny_server(forever) as base:
        labkit.configure(base_url=base, timeout=1)
        started = time.monotonic()
        with pytest.raises(labkit.StreamError, match="stalled: nothing arrived for 1 s") as info:
            labkit.chat("Hi", display=False)
    assert time.monotonic() - started < 2.5 and info.value.reason == "stalled"


def test_a_port_that_accepts_but_never_answers() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes connections; nobody reads or answers
        base = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        labkit.configure(base_url=base, timeout=1)
        started = time.monotonic()
        with pytest.raises(labkit.BackendUnreachable, match="accepted the connection but sent nothing for 1 s") as info:
            labkit.chat("Hi", display=False)
        assert time.monotonic() - started < 2.5
    assert "Nothing is listening" not in str(info.value)


def test_a_connection_that_never_completes() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        for _ in range(4):  # fill the accept queue: further handshakes are dropped, connect() hangs
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(address)
            fillers.append(s)
        time.sleep(0.2)
        labkit.configure(base_url=f"http://127.0.0.1:{address[1]}/v1", timeout=1)
        started = time.monotonic()
        try:
            with pytest.raises(labkit.BackendUnreachable, match="Could not connect to .* within 1 s"):
                labkit.chat("Hi", display=False)
            assert time.monotonic() - started < 2.5
        finally:
            for s in fillers:
                s.close()


def test_a_long_retry_after_is_raised_at_once_with_the_wait() -> None:
    with tiny_server(send(429, "application/json", '{"object":"error","message":"Too many requests","code":429}',
                          {"retry-after": "60"})) as base:
        labkit.configure(base_url=base, timeout=3)
        started = time.monotonic()
        with pytest.raises(labkit.RateLimited, match="asks to wait 60 s, longer than LABKIT_TIMEOUT") as info:
            labkit.chat("Hi", display=False)
    assert time.monotonic() - started < 1.0 and info.value.retry_after == 60


def test_a_retry_after_within_the_timeout_is_announced_before_waiting() -> None:
    calls = []

    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:
            send(429, "application/json", '{"object":"error","message":"slow down","code":429}',
                 {"retry-after": "5"})(h)
        else:
            sse([chunk(), chunk("Hello."), chunk(None, "stop")])(h)

    with tiny_server(handle) as base:
        labkit.configure(base_url=base, timeout=10)
        stream = labkit.stream_chat("Hi")
        notes: list[str] = []
        waits: list[float] = []
        stream.notify, stream.sleep = notes.append, waits.append
        assert "".join(stream) == "Hello."
    assert notes == ["labkit: rate-limited: retrying in 5 s, press stop to cancel"] and waits == [5.0]
    assert stream.reply.attempts == 2


def test_a_batch_under_a_long_rate_limit_fails_fast_and_says_how_long(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from labkit.batch import BatchItem, load_results, run_batch

    body = '{"object":"error","message":"Too many requests","code":429}'
    with tiny_server(send(429, "application/json", body, {"retry-after": "60"})) as base:
        labkit.configure(base_url=base, timeout=3)
        started = time.monotonic()
        result = run_batch([BatchItem(str(i), "Hi") for i in range(4)], tmp_path / "a.jsonl", progress=False)
    assert result.failed == 4 and time.monotonic() - started < 3
    record = load_results(tmp_path / "a.jsonl")["0"]
    assert record["error_type"] == "RateLimited" and "asks to wait 60 s" in record["error"]


def test_a_blank_question_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(labkit.UsageError, match="The question is empty"):
        labkit.chat("   \n", display=False)
    with pytest.raises(labkit.UsageError, match="The question is empty"):
        labkit.Conversation().ask("  ", display=False)
    with pytest.raises(labkit.UsageError, match="whole number"):
        labkit.run_batch([labkit.BatchItem(id="a", question="Hi")], "unused.jsonl", concurrency="4")  # type: ignore[arg-type]
