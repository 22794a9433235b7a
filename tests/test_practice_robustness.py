"""The practice server under bad input and bad clients: never a 500, bounded work, slow clients timed out."""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from labkit.cli import main as cli_main
from labkit.practice import serve_in_thread
from labkit.practice.app import _RateWindows

MODEL = "llava-v1.6-34b"
# Pillow warns about the damaged EXIF these tests send (in the server's threads); the answers are what count.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")


def post(base: str, payload: object, headers: dict[str, str] | None = None, client: httpx.Client | None = None,
         ) -> httpx.Response:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()  # ensure_ascii: \ud800 escapes
    send = client.post if client is not None else httpx.post
    return send(f"{base}/chat/completions", content=data, timeout=30,
                headers={"content-type": "application/json", **(headers or {})})


def assert_dialect_error(r: httpx.Response, dialect: str, status: int = 400) -> str:
    """The error body in the dialect's own shape; returns its message. Behind FastChat's front an image
    reaches the worker once the stream began: there the error is the stream's 50001 event."""
    if dialect == "fastchat" and status == 400 and r.status_code == 200 and '"error_code": 50001}' in r.text:
        events = [e[6:] for e in r.text.split("\n\n") if e]
        assert events[-1] == "[DONE]" and len(events) == 3, r.text
        text = json.loads(events[-2])["text"]  # SERVER_ERROR_MSG, a blank line, then (the worker's words)
        return text.split("\n\n", 1)[1][1:-1]
    assert r.status_code == status, r.text
    got = r.json()
    if dialect == "fastchat":
        assert list(got) == ["object", "message", "code"] and got["object"] == "error"
        return got["message"]
    assert list(got["error"]) == ["message", "type", "param", "code"] and got["error"]["code"] == status
    return got["error"]["message"]


def image_body(data: bytes, mime: str = "image/png", text: str = "Describe the image") -> dict:
    url = f"data:{mime};base64," + base64.b64encode(data).decode()
    return {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": [
        {"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}]}


def encoded(fmt: str, size: tuple[int, int] = (64, 48), exif: bool = False) -> bytes:
    img = Image.effect_mandelbrot(size, (-2, -1.5, 1, 1.5), 60).convert("RGB")
    buf = io.BytesIO()
    kwargs: dict = {}
    if exif:
        e = Image.Exif()
        e[0x0112] = 6
        e[0x010F] = "labkit"
        kwargs["exif"] = e
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(params=["fastchat", "vllm"])
def dialect(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def url_of(dialect: str, fastchat_url: str, vllm_url: str) -> str:
    return fastchat_url if dialect == "fastchat" else vllm_url


# --- lone surrogates: a 400 in the dialect's shape, wherever they are ------------------------------

SURROGATE_CASES = {
    "text": {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi \ud800 there"}]},
    "text part": {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "\udc00"}]}]},
    "system": {"model": MODEL, "stream": True, "messages": [{"role": "system", "content": "Be \ud83d brief"},
                                                           {"role": "user", "content": "Hi"}]},
    "role": {"model": MODEL, "stream": True, "messages": [{"role": "us\ud800er", "content": "Hi"}]},
    "model": {"model": "llava\ud800", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
    "key": {"model": MODEL, "stream": True, "\ud800": 1, "messages": [{"role": "user", "content": "Hi"}]},
}


def assert_surrogate_answer(url_of: str, dialect: str, payload: object) -> None:
    """vLLM: a 400 naming the problem. FastChat's front passes the string on and the stream breaks after its
    role chunk: the connection drops, as on the real front (tests/fastchat/test_conformance.py)."""
    if dialect == "vllm":
        assert "surrogates not allowed" in assert_dialect_error(post(url_of, payload), dialect)
        return
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with httpx.stream("POST", f"{url_of}/chat/completions", content=data, timeout=30,
                      headers={"content-type": "application/json"}) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()


@pytest.mark.parametrize("where", sorted(SURROGATE_CASES))
def test_lone_surrogates_are_refused_as_each_real_server_does(url_of: str, dialect: str, where: str) -> None:
    if dialect == "fastchat" and where == "key":  # an unknown field: FastChat drops it unread
        assert post(url_of, SURROGATE_CASES[where]).text.endswith("data: [DONE]\n\n")
        return
    if dialect == "fastchat" and where == "model":  # FastChat would fail to echo it in its 40301: a 400 here
        assert "surrogates not allowed" in assert_dialect_error(post(url_of, SURROGATE_CASES[where]), dialect)
        return
    if dialect == "fastchat" and where == "role":  # an unknown role: FastChat's 500, the practice server's 400
        assert "role is 'us\\ud800er'" in assert_dialect_error(post(url_of, SURROGATE_CASES[where]), dialect)
        return
    assert_surrogate_answer(url_of, dialect, SURROGATE_CASES[where])


def test_raw_utf8_encoded_surrogates_are_refused_too(url_of: str, dialect: str) -> None:
    raw = b'{"model": "llava-v1.6-34b", "stream": true, "messages": [{"role": "user", "content": "a\xed\xa0\x80b"}]}'
    assert_surrogate_answer(url_of, dialect, raw)


def test_a_valid_surrogate_pair_is_an_emoji_and_is_answered(url_of: str) -> None:
    payload = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi \U0001f600"}]}
    raw = json.dumps(payload).encode()
    assert b"\\ud83d\\ude00" in raw  # sent as the escaped pair, as json.dumps does by default
    r = post(url_of, raw)
    assert r.status_code == 200 and "[DONE]" in r.text and "\U0001f600" in r.text


# --- damaged images: a 400 that says so ----------------------------------------------------------

@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_truncated_images_get_a_400(url_of: str, dialect: str, fmt: str, mime: str) -> None:
    data = encoded(fmt, exif=fmt != "PNG")
    for cut in (len(data) // 3, len(data) // 2, len(data) * 9 // 10):
        message = assert_dialect_error(post(url_of, image_body(data[:cut], mime)), dialect)
        assert "damaged or truncated" in message or "not an image Pillow can open" in message


def test_damaged_exif_gets_a_400_or_an_answer_never_a_500(url_of: str) -> None:
    data = encoded("JPEG", exif=True)
    start = data.index(b"Exif\x00\x00")
    rng = random.Random(7)
    statuses = set()
    with httpx.Client() as client:
        for _ in range(60):
            bad = bytearray(data)
            for _ in range(4):
                bad[start + rng.randrange(6, 60)] = rng.randrange(256)
            statuses.add(post(url_of, image_body(bytes(bad), "image/jpeg"), client=client).status_code)
    assert statuses <= {200, 400}, statuses


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_mutated_images_never_get_a_500(url_of: str, fmt: str) -> None:
    data = encoded(fmt, exif=fmt in ("JPEG", "WEBP"))
    rng = random.Random(fmt)
    statuses: dict[int, int] = {}
    with httpx.Client() as client:
        for _ in range(120):
            bad = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            payload = image_body(bytes(bad), "image/" + fmt.lower())
            status = post(client=client, base=url_of, payload=payload).status_code
            statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= {200, 400}, statuses


# --- cheap inputs, expensive server: refused before decoding --------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels with almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_an_8000_pixel_square_png_is_refused_before_decoding(url_of: str, dialect: str) -> None:
    img = Image.new("RGB", (8000, 8000), (200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    assert len(buf.getvalue()) < 400_000  # a cheap request
    message = assert_dialect_error(post(url_of, image_body(buf.getvalue())), dialect)
    assert message.endswith("Image size (64000000 pixels) exceeds limit of 33554432 pixels, could be "
                            "decompression bomb DOS attack.")


def test_a_bomb_over_pillows_own_limit_gets_pillows_words(url_of: str, dialect: str) -> None:
    message = assert_dialect_error(post(url_of, image_body(png_header_only(20000, 20000))), dialect)
    assert "Image size (400000000 pixels) exceeds limit of 178956970 pixels, could be decompression bomb" in message


def test_a_large_jpeg_is_still_read_because_it_decodes_at_reduced_scale(fastchat_url: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (7000, 5000), (20, 40, 200)).save(buf, format="JPEG", quality=50)
    r = post(fastchat_url, image_body(buf.getvalue(), "image/jpeg"))
    assert r.status_code == 200 and "7000×5000" in r.text and "blue" in r.text


def test_a_huge_text_is_counted_and_refused_as_over_the_context(url_of: str, dialect: str) -> None:
    text = "word " * 3_000_000  # 15 MB
    payload = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": text}]}
    message = assert_dialect_error(post(url_of, payload), dialect)
    # FastChat counts the whole text; vLLM's tokenizer stops at the context + 1
    assert "maximum context length is 4096 tokens" in message
    assert ("3000005" if dialect == "fastchat" else "at least 4097 input tokens") in message


# --- a fuzz test: whatever arrives, never a 5xx ------------------------------------------------------

_IMAGES = [encoded("PNG", (16, 16)), encoded("JPEG", (16, 16), exif=True), encoded("WEBP", (16, 16))]
texts = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), texts)


@st.composite
def image_urls(draw: st.DrawFn) -> str:
    data = bytearray(draw(st.sampled_from(_IMAGES)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    mime = draw(st.sampled_from(["image/png", "image/jpeg", "image/webp", "text/plain"]))
    return f"data:{mime};base64," + base64.b64encode(bytes(data[:cut])).decode()


parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(texts, scalars)}),
    st.fixed_dictionaries({"type": st.just("image_url"),
                           "image_url": st.one_of(st.fixed_dictionaries({"url": image_urls()}), scalars)}),
    st.dictionaries(texts, scalars, max_size=3),
)
messages = st.fixed_dictionaries({
    "role": st.one_of(st.sampled_from(["user", "system", "assistant"]), texts, scalars),
    "content": st.one_of(texts, st.lists(parts, max_size=3), scalars),
})
bodies = st.fixed_dictionaries(
    {"model": st.one_of(st.just(MODEL), texts, scalars),
     "messages": st.one_of(st.lists(messages, min_size=1, max_size=4), scalars)},
    optional={"stream": st.one_of(st.just(True), scalars), "max_tokens": scalars, "temperature": scalars,
              "top_p": scalars, "seed": scalars, "n": scalars,
              "stream_options": st.one_of(st.just({"include_usage": True}), scalars)},
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=bodies, as_bytes=st.booleans())
def test_fuzzed_requests_never_get_a_5xx(fuzz_servers: dict[str, tuple[str, httpx.Client]], payload: dict,
                                         as_bytes: bool) -> None:
    raw = json.dumps(payload, ensure_ascii=as_bytes, allow_nan=True).encode("utf-8", "surrogatepass")
    for dialect, (base, client) in fuzz_servers.items():
        try:
            r = post(base, raw, client=client)
        except httpx.RemoteProtocolError:
            # FastChat's front drops a stream whose worker fails on a value it passed on (temperature or
            # top_p null or NaN, n null, a lone surrogate), as the practice server's FastChat dialect does
            assert dialect == "fastchat", payload
            continue
        assert r.status_code < 500, (dialect, r.status_code, r.text[:300])
        if r.status_code == 400:
            assert_dialect_error(r, dialect)
        elif r.status_code == 200:
            assert r.text.endswith("data: [DONE]\n\n")


@pytest.fixture(scope="module")
def fuzz_servers() -> Iterator[dict[str, tuple[str, httpx.Client]]]:
    with serve_in_thread(fast=True, dialect="fastchat") as fc, serve_in_thread(fast=True, dialect="vllm") as vl, \
            httpx.Client() as c1, httpx.Client() as c2:
        yield {"fastchat": (fc, c1), "vllm": (vl, c2)}


# --- slow and vanishing clients --------------------------------------------------------------------

class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + ("\n" + logging.Formatter().formatException(record.exc_info)
                                                 if record.exc_info else ""))


    def attach(self) -> None:
        """Listen to the server's log (after it started: uvicorn's logging set-up drops earlier handlers)."""
        logging.getLogger("uvicorn.error").addHandler(self)


@pytest.fixture
def server_log() -> Iterator[Collect]:
    handler = Collect()
    yield handler
    logging.getLogger("uvicorn.error").removeHandler(handler)


def host_port(base: str) -> tuple[str, int]:
    hostport = base.split("//", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_a_normal_request_is_served_while_slow_connections_fill_the_limit(server_log: Collect) -> None:
    with serve_in_thread(fast=True, max_connections=20, header_timeout=30) as base:
        server_log.attach()
        addr = host_port(base)
        slow = []
        for i in range(40):  # twice the limit: idle, half-sent headers
            s = socket.create_connection(addr)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"")
            slow.append(s)
        try:
            client = openai.OpenAI(base_url=base, api_key="dummy_key", max_retries=0)
            stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}],
                                                    stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert "simulated answer" in text
        finally:
            for s in slow:
                s.close()
    assert any("limit of 20: closed an idle connection" in line for line in server_log.lines), server_log.lines


def test_slow_headers_and_a_stalled_body_are_timed_out(server_log: Collect) -> None:
    with serve_in_thread(fast=True, header_timeout=1.0, body_timeout=1.0) as base:
        server_log.attach()
        addr = host_port(base)
        idle = socket.create_connection(addr)
        trickle = socket.create_connection(addr)
        stalled = socket.create_connection(addr)
        try:
            trickle.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
            stalled.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                            b"content-length: 1000\r\n\r\n{\"model\":")
            started = time.monotonic()
            for s in (idle, trickle):
                assert closed_within(s, 5), "a connection without a complete request is closed"
            data = b""
            stalled.settimeout(5)
            try:
                while chunk := stalled.recv(4096):
                    data += chunk
            except OSError:
                pass
            assert time.monotonic() - started < 5
            assert not data.startswith(b"HTTP/1.1 5"), data[:100]
        finally:
            for s in (idle, trickle, stalled):
                s.close()
        assert httpx.get(base.rsplit("/", 1)[0] + "/health").status_code == 200
    assert not any("Traceback" in line or "Exception in ASGI" in line for line in server_log.lines), server_log.lines


def test_a_client_leaving_mid_body_logs_no_traceback(server_log: Collect) -> None:
    with serve_in_thread(fast=True) as base:
        server_log.attach()
        s = socket.create_connection(host_port(base))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: 100000\r\n\r\n" + b"{" * 5000)
        time.sleep(0.2)
        s.close()
        time.sleep(0.5)
        assert post(base, {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
                    ).status_code == 200
    assert not any("Traceback" in line or "Exception in ASGI" in line for line in server_log.lines), server_log.lines


def test_oversized_headers_get_431(fastchat_url: str) -> None:
    s = socket.create_connection(host_port(fastchat_url))
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nx-junk: " + b"a" * 100_000)
        s.settimeout(5)
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    finally:
        s.close()


def test_when_every_connection_is_busy_a_newcomer_gets_a_503_but_health_is_answered(server_log: Collect) -> None:
    stall = {"x-practice-fault": "stall-after=1,stall-seconds=3"}
    payload = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}).encode()
    with serve_in_thread(fast=True, max_connections=2) as base, from_address("127.0.0.1") as c1, \
            from_address("127.0.0.2") as c2, from_address("127.0.0.3") as c3:
        server_log.attach()
        with c1.stream("POST", f"{base}/chat/completions", content=payload, headers=stall) as r1, \
                c2.stream("POST", f"{base}/chat/completions", content=payload, headers=stall) as r2:
            assert r1.status_code == r2.status_code == 200
            health = c3.get(base.rsplit("/", 1)[0] + "/health")
            assert health.status_code == 200 and health.headers["connection"] == "close"
            r = c3.post(f"{base}/chat/completions", content=payload)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            assert "Too many connections" in r.text
    assert any("refused a request" in line and "limit 2" in line for line in server_log.lines), server_log.lines


@contextmanager
def from_address(source: str, timeout: float = 10) -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from ``source`` (any 127.x.y.z is this machine), one per request."""
    transport = httpx.HTTPTransport(local_address=source, retries=0, limits=httpx.Limits(max_keepalive_connections=0))
    with httpx.Client(transport=transport, timeout=timeout) as client:
        yield client


TRICKLE = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
           b"content-length: 100000\r\n\r\n{")


def test_trickling_bodies_from_one_address_lock_out_no_one(server_log: Collect) -> None:
    """Issue 17: connections sending their bodies a byte at a time, twice the limit, from one address."""
    payload = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hello"}]}
    with serve_in_thread(fast=True, max_connections=20) as base:
        server_log.attach()
        addr = host_port(base)
        drip = []
        try:
            for _ in range(40):
                s = socket.create_connection(addr, source_address=("127.0.0.1", 0))
                s.sendall(TRICKLE)
                drip.append(s)
            time.sleep(1.5)  # the bodies have been trickling for a while: no longer new requests
            for s in drip:
                try:
                    s.send(b" ")
                except OSError:
                    pass
            root = base.rsplit("/", 1)[0]
            with from_address("127.0.0.1") as same, from_address("127.0.0.2") as other:
                for client in (same, other):
                    started = time.monotonic()
                    assert client.get(f"{root}/health").status_code == 200
                    assert time.monotonic() - started < 1.0
                    r = post(base, payload, client=client)
                    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n"), r.text[:200]
        finally:
            for s in drip:
                s.close()
    assert any("sending its request body" in line for line in server_log.lines), server_log.lines


def test_a_trickling_body_is_cut_at_the_whole_body_deadline(server_log: Collect) -> None:
    """A byte every 0.3 s never leaves a 1.5 s gap, yet the body must arrive within 1.5 s of its headers."""
    with serve_in_thread(fast=True, body_timeout=1.5, header_timeout=30) as base:
        server_log.attach()
        s = socket.create_connection(host_port(base))
        started = time.monotonic()
        try:
            s.sendall(TRICKLE)
            cut = False
            while time.monotonic() - started < 8:
                time.sleep(0.3)
                try:
                    s.send(b" ")
                except OSError:
                    cut = True
                    break
                if closed_within(s, 0.01):
                    cut = True
                    break
            assert cut, "the trickling body was never cut"
            assert time.monotonic() - started < 4.5
        finally:
            s.close()
    assert any("request body had not arrived in full 1.5 s after its headers" in line for line in server_log.lines)


# --- rate limiter, fault header, CLI -----------------------------------------------------------------

def test_the_rate_limiter_forgets_clients_and_stays_bounded() -> None:
    windows = _RateWindows(max_clients=1000)
    for i in range(20_000):
        assert windows.admit(f"addr:{i}", 5, now=float(i) / 1000) is None
    assert len(windows) <= 1000
    assert windows.admit("late", 1, now=1000.0) is None and len(windows) == 1  # a minute later: all forgotten


def test_a_limited_client_stays_limited_after_requests_from_thousands_of_other_addresses() -> None:
    """Issue 17: after 4,096 other addresses, the limiter used to forget the client it was limiting."""
    windows = _RateWindows()
    assert windows.admit("addr:greedy", 2, now=0.0) is None and windows.admit("addr:greedy", 2, now=0.1) is None
    assert windows.admit("addr:greedy", 2, now=0.2) is not None
    for i in range(10_000):
        assert windows.admit(f"addr:10.0.{i // 256}.{i % 256}", 2, now=1.0 + i / 1000) is None
    assert len(windows) <= 4096
    retry = windows.admit("addr:greedy", 2, now=12.0)
    assert retry is not None and 45 <= retry <= 61  # still limited for the rest of its minute
    assert windows.admit("addr:greedy", 2, now=61.0) is None  # and free again once the minute is over


def test_when_every_client_held_is_limited_the_least_recently_limited_goes_first() -> None:
    windows = _RateWindows(max_clients=3)
    for name in ("a", "b", "c", "d"):
        windows.admit(name, 1, now=0.0)
        assert windows.admit(name, 1, now=0.1) is not None
    assert len(windows) == 3
    assert windows.admit("a", 1, now=0.2) is None  # "a", limited first, was forgotten
    assert windows.admit("d", 1, now=0.2) is not None


def test_no_fault_header_ignores_the_header() -> None:
    payload = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Hello"}]}
    with serve_in_thread(fast=True, fault_header=False) as base:
        r = post(base, payload, headers={"x-practice-fault": "error-after=0"})
        assert r.status_code == 200 and "error_code" not in r.text and '"finish_reason": "stop"' in r.text


@pytest.mark.parametrize("args,message", [
    (["--tokens-per-second", "0"], "0 is out of range: give a number above 0"),
    (["--tokens-per-second", "nan"], "nan is not a finite number"),
    (["--rate-limit", "-1"], "-1 is out of range: give a whole number, 1 or more"),
    (["--max-body-mb", "-1"], "-1 is out of range: give a number above 0"),
    (["--port", "70000"], "70000 is out of range: give a port from 1 to 65535"),
    (["--max-model-len", "zero"], "'zero' is not a number"),
])
def test_the_cli_refuses_nonsense(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["practice", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_in_thread_binds_loopback() -> None:
    with serve_in_thread(fast=True) as url:
        assert url.startswith("http://127.0.0.1:")


def test_serving_beyond_loopback_warns() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "practice", "--host", "0.0.0.0", "--port", "0", "--fast"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin", "LABKIT_LANG": "en"})
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert "Warning: serving on 0.0.0.0, beyond this machine" in line
        assert "Any API key is accepted" in line and "--no-fault-header" in line
    finally:
        proc.terminate()
        proc.wait(10)
