"""Differential conformance: one corpus of raw requests, sent byte for byte to a real server and to the
practice server, and the answers compared on what a client reads.

- :func:`corpus` builds the requests: ``gen/…`` bodies drawn with hypothesis from the chat request's
  schema (a valid body, or one with exactly one thing wrong: a type, a range, a null, a missing or an
  unknown field, odd Unicode), derandomized so that every run sends the same bytes; and hand-written
  classes (``method/…``, ``cors/…``, ``content-type/…``, ``key/…``, ``size/…``, ``image/…``,
  ``conversation/…``). A case's id names what is special about it, e.g. ``gen/017/temperature:string``.
- :func:`observe` sends one case and keeps what a client reads: status, the headers it looks at, an
  error's code and message (ids and timestamps normalised), a stream's framing (each event's shape,
  texts blanked, runs of content events collapsed).
- :func:`differences` compares two observations aspect by aspect; :class:`Deviations` reads the one
  deviations table in README.md (maintainer section) and says which differences it lists.

The real suites (tests/fastchat, tests/vllm) send the corpus to both servers; tests/test_conformance_table.py
checks, on the practice server alone, that the table still says what the practice server does.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MB = 1024 * 1024
#: Response headers a client (openai-python, httpx, a browser) reads.
CLIENT_HEADERS = ("content-type", "transfer-encoding", "access-control-allow-origin",
                  "access-control-allow-methods", "access-control-allow-headers",
                  "access-control-allow-credentials", "allow", "retry-after", "www-authenticate")


@dataclass(frozen=True)
class Case:
    """One raw request: its id (``class/…``), method, path under the base URL, headers and body bytes
    (a callable for the big ones, built only when sent)."""

    id: str
    body: bytes | Callable[[], bytes] = b""
    method: str = "POST"
    path: str = "/chat/completions"
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    #: Cases sent only to a server that enforces API keys (``key/enforced/…``).
    keyed: bool = False

    @property
    def group(self) -> str:
        return self.id.split("/")[0]

    def payload(self) -> bytes:
        return self.body() if callable(self.body) else self.body


# ---------------------------------------------------------------------------------------------- the corpus


def _dumps(body: Any) -> bytes:
    # allow_nan: NaN/Infinity go out as the bare words a client that uses json.dumps would send.
    return json.dumps(body, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def png_data_url(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40), fmt: str = "PNG") -> str:
    """A solid image as a data URL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format=fmt)
    mime = "jpeg" if fmt == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def _user(text: str, *images: str) -> dict[str, Any]:
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text},
                                        *({"type": "image_url", "image_url": {"url": u}} for u in images)]}


#: One mutation per generated body: (field, kind) → a strategy for the new value (None: delete the field).
def _mutations(st: Any, model: str) -> dict[tuple[str, str], Any]:
    text = st.text(max_size=12)
    numberish = st.one_of(st.integers(-5, 10).map(str), st.floats(-3, 5, allow_nan=False).map(lambda f: f"{f:.2f}"))
    return {
        ("model", "wrong"): st.sampled_from(["gpt-4o", "llava", model.upper(), model + " ", ""]),
        ("model", "null"): st.just(None),
        ("model", "integer"): st.integers(-3, 3),
        ("model", "missing"): st.just(...),
        ("messages", "missing"): st.just(...),
        ("messages", "null"): st.just(None),
        ("messages", "string"): text,
        ("messages", "object"): st.just({"role": "user", "content": "Hi"}),
        ("messages", "empty"): st.just([]),
        ("messages", "role-unknown"): st.sampled_from(["robot", "tool", "function", "developer", "USER", ""]).map(
            lambda r: [{"role": r, "content": "Hi"}]),
        ("messages", "role-missing"): st.just([{"content": "Hi"}]),
        ("messages", "content-missing"): st.just([{"role": "user"}]),
        ("messages", "content-null"): st.just([{"role": "user", "content": None}]),
        ("messages", "content-integer"): st.integers(-9, 99).map(lambda i: [{"role": "user", "content": i}]),
        ("messages", "content-part-unknown"): st.just([{"role": "user", "content": [{"type": "audio", "x": 1}]}]),
        ("messages", "content-part-no-text"): st.just([{"role": "user", "content": [{"type": "text"}]}]),
        ("messages", "assistant-last"): st.just([{"role": "user", "content": "Hi"},
                                                 {"role": "assistant", "content": "Hello"}]),
        ("messages", "system-only"): st.just([{"role": "system", "content": "Be brief."}]),
        ("messages", "unicode"): st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).map(
            lambda t: [{"role": "user", "content": t}]),
        ("messages", "surrogate"): st.sampled_from(["\ud83d", "a\udc00b", "\udfff"]).map(
            lambda t: [{"role": "user", "content": t}]),
        ("messages", "extra-key"): st.just([{"role": "user", "content": "Hi", "name": "Ann"}]),
        ("stream", "string"): st.sampled_from(["true", "yes", "1", "maybe", ""]),
        ("stream", "integer"): st.sampled_from([0, 1, 2]),
        ("stream", "null"): st.just(None),
        ("stream", "false"): st.just(False),
        ("max_tokens", "range"): st.sampled_from([0, -1, -100, 10**6, 2**31, 2**63]),
        ("max_tokens", "string"): numberish,
        ("max_tokens", "float"): st.sampled_from([5.0, 5.5, 1e3, 0.5]),
        ("max_tokens", "bool"): st.booleans(),
        ("max_tokens", "null"): st.just(None),
        ("max_tokens", "missing"): st.just(...),
        ("temperature", "range"): st.one_of(st.floats(2.0001, 100), st.floats(-100, -0.0001),
                                            st.sampled_from([1e400, -1e400])),
        ("temperature", "string"): st.one_of(numberish, st.sampled_from(["hot", ""])),
        ("temperature", "null"): st.just(None),
        ("temperature", "nan"): st.just(math.nan),
        ("temperature", "bool"): st.booleans(),
        ("temperature", "valid"): st.floats(0, 2),
        ("top_p", "range"): st.one_of(st.floats(1.0001, 10), st.floats(-10, -0.0001)),
        ("top_p", "string"): numberish,
        ("top_p", "null"): st.just(None),
        ("top_p", "valid"): st.floats(0.01, 1),
        ("n", "range"): st.sampled_from([0, -1, 2, 3]),
        ("n", "string"): st.sampled_from(["1", "2", "x"]),
        ("n", "null"): st.just(None),
        ("top_k", "range"): st.sampled_from([0, -1, -5, 1, 40]),
        ("top_k", "string"): st.sampled_from(["5", "x"]),
        ("stop", "valid"): st.one_of(text, st.lists(text, max_size=3)),
        ("stop", "number"): st.sampled_from([5, [5], 1.5]),
        ("stop", "object"): st.just({"a": 1}),
        ("seed", "valid"): st.integers(0, 2**31),
        ("seed", "string"): st.sampled_from(["42", "x"]),
        ("seed", "range"): st.sampled_from([2**64, -(2**63) - 1]),
        ("user", "object"): st.just({}),
        ("user", "string"): text,
        ("frequency_penalty", "string"): st.sampled_from(["x", "0.5"]),
        ("frequency_penalty", "range"): st.sampled_from([-3, 3, 0.5]),
        ("presence_penalty", "range"): st.sampled_from([-3, 3, 0.5]),
        ("stream_options", "valid"): st.sampled_from([{"include_usage": True}, {"include_usage": False}, {}]),
        ("stream_options", "string"): st.just("usage"),
        ("unknown", "field"): st.dictionaries(st.sampled_from(["foo", "logit_bias_x", "extra", "tools_"]),
                                              st.one_of(st.none(), st.integers(), text), min_size=1, max_size=2),
        ("body", "array"): st.just([{"model": model}]),
        ("body", "string"): text,
        ("body", "number"): st.integers(),
    }


def generated(model: str, count: int, dialect: str = "fastchat") -> list[Case]:
    """``count`` bodies drawn with hypothesis (derandomized: the same bytes every run), ids naming the
    one mutation (``gen/017/temperature:string``) or ``valid``.

    Example:
        >>> [c.id for c in generated("m", 3)] == [c.id for c in generated("m", 3)]
        True
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    mutations = _mutations(st, model)
    keys = sorted(mutations)
    words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
    base = st.fixed_dictionaries(
        {"model": st.just(model), "stream": st.just(True), "temperature": st.just(0),
         "max_tokens": st.integers(1, 6),
         "messages": st.one_of(words.map(lambda t: [_user(t)]),
                               st.tuples(words, words, words).map(lambda t: [
                                   {"role": "system", "content": t[0]}, _user(t[1]),
                                   {"role": "assistant", "content": "OK"}, _user(t[2])]))},
        optional={"top_p": st.floats(0.1, 1), "stop": st.lists(st.sampled_from(["zzz", "\n\n"]), max_size=2),
                  "seed": st.integers(0, 1000), "n": st.just(1)})
    per_kind = max(1, math.ceil(count * 3 / 4 / len(keys)))
    drawn: list[Case] = []

    def draw(label: str, mutation: Any, examples: int) -> None:
        found: list[bytes] = []

        # derandomize: the same examples every run, on every machine (for one hypothesis version).
        @settings(derandomize=True, database=None, max_examples=examples, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), deadline=None)
        @given(body=base, value=mutation)
        def one(body: dict[str, Any], value: Any) -> None:
            name = label.split(":")[0]
            if name == "body":
                body = value
            elif name == "unknown":
                body = {**body, **value}
            elif value is ...:
                body.pop(name, None)
            elif name != "valid":
                body[name] = value
            if dialect == "vllm" and isinstance(body, dict) and body.get("max_tokens") is None:
                # vLLM would fill its whole context with the tiny model's tokens (a minute on a CPU): its
                # own other name for the limit keeps the answer short.
                body["max_completion_tokens"] = 4
            found.append(_dumps(body))

        one()
        start = len(drawn)
        drawn.extend(Case(f"gen/{start + i:03d}/{label}", b) for i, b in enumerate(found[:examples]))

    for name, kind in keys:
        draw(f"{name}:{kind}", mutations[(name, kind)], per_kind)
    draw("valid", st.none(), max(1, count - len(drawn), count // 4))
    return drawn


def _stream_body(model: str, messages: list[dict[str, Any]], **options: Any) -> bytes:
    return _dumps({"model": model, "messages": messages, "stream": True, "temperature": 0, "max_tokens": 4,
                   **options})


def _big_text_body(model: str, size: int) -> Callable[[], bytes]:
    def build() -> bytes:
        head = _stream_body(model, [_user("")])
        filler = ("word " * (size // 5 + 1))[: max(0, size - len(head))]
        return _stream_body(model, [_user(filler)])
    return build


def _noise_photo_body(model: str, width: int, height: int) -> Callable[[], bytes]:
    """A phone-sized photo of noise (incompressible, so the body is as big as a real photo's)."""
    def build() -> bytes:
        import os

        from PIL import Image

        buf = io.BytesIO()
        Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, "JPEG", quality=95)
        url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
        return _stream_body(model, [_user("What size is this image?", url)])
    return build


def hand_written(model: str) -> list[Case]:
    """The hand-written classes: methods, CORS, content types, keys, sizes, images, conversations."""
    ok = _stream_body(model, [_user("Hello")])
    image = png_data_url(500, 300)
    cases: list[Case] = []
    add = cases.append
    for method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE"):
        add(Case(f"method/{method} chat", b"", method=method, headers=()))
    for method in ("HEAD", "OPTIONS", "POST", "DELETE"):
        add(Case(f"method/{method} models", b"", method=method, path="/models", headers=()))
    add(Case("method/GET models", b"", method="GET", path="/models", headers=()))
    add(Case("method/GET unknown path", b"", method="GET", path="/nothing-here", headers=()))
    add(Case("method/POST completions (legacy)", ok, path="/completions"))
    origin = ("origin", "http://localhost:8888")
    for what, extra in (("POST", ()), ("POST with headers", (("access-control-request-headers",
                                                          "authorization,content-type"),)),
                        ("PUT", ()), ("GET models", ())):
        method = what.split(" ")[0]
        path = "/models" if "models" in what else "/chat/completions"
        add(Case(f"cors/preflight {what}", b"", method="OPTIONS", path=path,
                 headers=(origin, ("access-control-request-method", method), *extra)))
    add(Case("cors/POST with origin", ok, headers=(("content-type", "application/json"), origin)))
    add(Case("cors/GET models with origin", b"", method="GET", path="/models", headers=(origin,)))
    for ctype in ("text/plain", "application/json; charset=utf-8", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", "application/JSON", ""):
        add(Case(f"content-type/{ctype or 'empty'}", ok, headers=(("content-type", ctype),)))
    add(Case("content-type/none", ok, headers=()))
    add(Case("content-type/json with body not JSON", b"{not json"))
    add(Case("content-type/json with empty body", b""))
    add(Case("content-type/json with body latin-1", ok.replace(b"Hello", "Hellö".encode("latin-1"))))
    add(Case("content-type/json with BOM", b"\xef\xbb\xbf" + ok))
    for what, value in (("Bearer dummy", "Bearer dummy"), ("bearer lower-case", "bearer dummy"),
                        ("Basic", "Basic ZHVtbXk6"), ("Bearer only", "Bearer")):
        add(Case(f"key/open/{what}", ok, headers=(("content-type", "application/json"), ("authorization", value))))
    bad_json = b"{not json"
    for what, auth, body in (("right key", "Bearer course-key", ok), ("wrong key", "Bearer nope", ok),
                             ("no key", None, ok), ("wrong key and body not JSON", "Bearer nope", bad_json),
                             ("no key and body not JSON", None, bad_json),
                             ("wrong key and wrong model", "Bearer nope", _stream_body("gpt-4o", [_user("Hi")])),
                             ("right key and body not JSON", "Bearer course-key", bad_json),
                             ("lower-case bearer", "bearer course-key", ok)):
        headers = (("content-type", "application/json"),) + ((("authorization", auth),) if auth else ())
        add(Case(f"key/enforced/{what}", body, headers=headers, keyed=True))
    add(Case("key/enforced/models with a wrong key", b"", method="GET", path="/models",
             headers=(("authorization", "Bearer nope"),), keyed=True))
    for mb in (1, 8, 21, 64):
        add(Case(f"size/text {mb} MB", _big_text_body(model, mb * MB)))
    add(Case("size/photo 12 MP (about 33 MB body)", _noise_photo_body(model, 4032, 3024)))
    bad = {
        "not base64": "data:image/png;base64,%%%%",
        "not an image": "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
        "truncated PNG": png_data_url(64, 64)[:-40],
        "empty data": "data:image/png;base64,",
        "no data URL": "file:///etc/passwd",
        "unreachable http URL": "http://127.0.0.1:9/cat.png",
        "SVG": "data:image/svg+xml;base64," + base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode(),
        "JPEG labelled PNG": png_data_url(80, 60, fmt="JPEG").replace("image/jpeg", "image/png"),
    }
    for what, url in bad.items():
        add(Case(f"image/bad: {what}", _stream_body(model, [_user("What is this?", url)])))
    add(Case("image/good 500x300", _stream_body(model, [_user("What size is this image?", image)])))
    add(Case("image/tiny 1x1", _stream_body(model, [_user("What size?", png_data_url(1, 1))])))
    add(Case("image/oversized 12000x12000 (decompression bomb)",
             lambda: _stream_body(model, [_user("What size?", png_data_url(12000, 12000))])))
    add(Case("image/two images", _stream_body(model, [_user("Compare", image, png_data_url(30, 30))])))
    add(Case("image/three images", _stream_body(model, [_user("Compare", image, image, image)])))
    add(Case("image/two messages with an image each", _stream_body(
        model, [_user("First", image), {"role": "assistant", "content": "OK"}, _user("Second", image)])))
    add(Case("image/in an assistant message", _stream_body(model, [
        _user("Hi"), {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": image}}]},
        _user("And?")])))
    add(Case("image/image_url a string", _stream_body(
        model, [{"role": "user", "content": [{"type": "image_url", "image_url": image}]}])))
    add(Case("image/image only, no text", _stream_body(
        model, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}])))
    for turns in (5, 40, 300):
        messages: list[dict[str, Any]] = [{"role": "system", "content": "Answer briefly."}]
        for t in range(turns):
            messages += [_user(f"Question {t}: what is {t} + {t}?"), {"role": "assistant", "content": f"{2 * t}"}]
        messages.append(_user("And the last one?"))
        add(Case(f"conversation/{turns} turns", _stream_body(model, messages)))
    add(Case("conversation/near the context", _stream_body(model, [_user("y " * 3500)])))
    add(Case("conversation/over the context", _stream_body(model, [_user("x " * 6000)])))
    add(Case("conversation/two users in a row", _stream_body(model, [_user("Hi"), _user("Hello again")])))
    add(Case("conversation/assistant first", _stream_body(model, [{"role": "assistant", "content": "Hi"},
                                                                    _user("Hello")])))
    return cases


def corpus(model: str, generated_count: int = 400, dialect: str = "fastchat") -> list[Case]:
    """The whole corpus for a server that serves ``model``: generated bodies then the hand-written ones.

    Example:
        >>> len(corpus("llava-v1.6-34b", 5)) > 5
        True
    """
    return generated(model, generated_count, dialect) + hand_written(model)


# ---------------------------------------------------------------------------------------------- observing

_RANDOM = [
    (re.compile(r"chatcmpl-[0-9A-Za-z]{16,22}\b"), "chatcmpl-<id>"),
    (re.compile(r"modelperm-[0-9A-Za-z]{16,22}\b"), "modelperm-<id>"),
    (re.compile(r"vllm-0\.32\.0-[0-9a-f]{8}"), "vllm-<fingerprint>"),
    (re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>"), "<_io.BytesIO object>"),
]


def _norm_text(text: str) -> str:
    for pattern, repl in _RANDOM:
        text = pattern.sub(repl, text)
    return text


def _shape(value: Any, key: str = "") -> Any:
    """An event's structure: texts blanked, ids and times replaced, the rest (keys, order, codes) kept."""
    if isinstance(value, dict):
        return {k: _shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if key in ("id", "created", "system_fingerprint", "root"):  # random, or vLLM's model path
        return f"<{key}>"
    if key in ("prompt_tokens", "completion_tokens", "total_tokens") and isinstance(value, int):
        return "<count>"  # each side's tokenizer (the practice server's is a stand-in)
    if key in ("content", "text") and isinstance(value, str):
        return "<text>"  # whatever the model said, even nothing (vLLM sends empty deltas)
    return value


@dataclass
class Observation:
    """What a client reads of one answer."""

    status: int
    headers: dict[str, str]
    #: "json", "stream", "text" or "empty"
    kind: str
    code: Any = None
    message: str | None = None
    #: json: the normalised body; stream: the events' shapes; text: the body.
    body: Any = None
    separators: str = ""
    raw_tail: str = ""
    #: A stream's content chunk shape (None: it sent none).
    content_shape: Any = None

    def summary(self) -> str:
        what = {"json": f"{self.code} {self.message!r}"[:160] if self.code is not None or self.message
                else json.dumps(self.body)[:160],
                "stream": " ".join(str(e)[:60] for e in (self.body or [])[-3:]),
                "text": repr(self.body)[:100], "empty": ""}[self.kind]
        return f"{self.status} {self.headers.get('content-type', '')} {what}"


def _error_fields(body: Any) -> tuple[Any, str | None]:
    if isinstance(body, dict):
        if "error" in body and isinstance(body["error"], dict):  # vLLM
            return body["error"].get("code"), body["error"].get("message")
        if body.get("object") == "error":  # FastChat
            return body.get("code"), body.get("message")
        if "error_code" in body:
            return body.get("error_code"), body.get("text")
        detail = body.get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("error"), dict):
            return detail["error"].get("code"), detail["error"].get("message")
        if isinstance(detail, str):
            return None, detail
    return None, None


def _is_content(event: Any) -> bool:
    """A chunk carrying text only: one choice, no finish reason, a delta with nothing but content."""
    choices = event.get("choices") if isinstance(event, dict) else None
    return (isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], dict)
            and choices[0].get("finish_reason") is None and list(choices[0].get("delta") or {}) == ["content"])


def _content_shape(raw: str) -> Any:
    for block in raw.split("\n\n"):
        if block.startswith("data: {"):
            try:
                event = _shape(json.loads(block[6:]))
            except ValueError:
                continue
            if _is_content(event):
                return event
    return None


def _stream_events(raw: str) -> tuple[list[Any], str]:
    events: list[Any] = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        if not block.startswith("data: "):
            events.append(f"<not an SSE data line: {block[:40]!r}>")
            continue
        data = block[6:]
        if data == "[DONE]":
            events.append("[DONE]")
            continue
        try:
            events.append(_shape(json.loads(data)))
        except ValueError:
            events.append(f"<not JSON: {data[:40]!r}>")
    # Content events (one per token, or none when the model's first tokens are held back) are left out;
    # their shape is compared on its own (content_shape).
    collapsed: list[Any] = []
    for e in events:
        if _is_content(e):
            continue
        if not collapsed or collapsed[-1] != e:
            collapsed.append(e)
    seps = "spaced" if '", "' in raw[:400] or '": ' in raw[:400] else "compact"
    return collapsed, seps


def observe(client: httpx.Client, base: str, case: Case, payload: bytes | None = None) -> Observation:
    """Send ``case`` (or ``payload``, its bytes built once for both servers) to the server at ``base``
    (``http://…/v1``) byte for byte and read the answer."""
    payload = case.payload() if payload is None else payload
    for attempt in (1, 2):
        try:
            response = client.request(case.method, base + case.path, content=payload or None,
                                      headers=dict(case.headers))
            raw = response.content
            break
        except (httpx.RemoteProtocolError, httpx.ReadError):  # the server dropped the connection mid-answer
            # once more, on a new connection: a kept-alive one the server had just closed fails the same way
            if attempt == 2:
                return Observation(0, {}, "text", body="connection dropped")
    headers = {k: v for k, v in response.headers.items() if k in CLIENT_HEADERS}
    if "access-control-allow-methods" in headers:  # a set, in whichever order
        headers["access-control-allow-methods"] = ",".join(sorted(
            m.strip() for m in headers["access-control-allow-methods"].split(",")))
    ctype = headers.get("content-type", "")
    text = raw.decode("utf-8", "replace")
    tail = text[-200:]
    if ctype.startswith("text/event-stream"):
        events, seps = _stream_events(_norm_text(text))
        return Observation(response.status_code, headers, "stream", body=events, separators=seps, raw_tail=tail,
                           content_shape=_content_shape(text))
    if not raw:
        return Observation(response.status_code, headers, "empty")
    try:
        body = json.loads(text)
    except ValueError:
        return Observation(response.status_code, headers, "text", body=text[:200])
    code, message = _error_fields(body)
    if code is None and message is None:
        return Observation(response.status_code, headers, "json", body=json.loads(_norm_text(json.dumps(
            _shape(body)))))
    return Observation(response.status_code, headers, "json", code=code,
                       message=_norm_text(message) if isinstance(message, str) else message, body=None)


def differences(real: Observation, practice: Observation) -> list[tuple[str, str, str]]:
    """``(aspect, real, practice)`` for each aspect that differs: status, header:NAME, kind, code,
    message, body (a JSON answer's shape) and framing (a stream's events)."""
    out: list[tuple[str, str, str]] = []
    if real.status != practice.status:
        out.append(("status", str(real.status), str(practice.status)))
    for name in sorted(set(real.headers) | set(practice.headers)):
        a, b = real.headers.get(name, "-"), practice.headers.get(name, "-")
        if a != b:
            out.append((f"header:{name}", a, b))
    if real.kind != practice.kind:
        out.append(("kind", real.summary(), practice.summary()))
        return out
    if real.kind == "json":
        if real.code != practice.code:
            out.append(("code", str(real.code), str(practice.code)))
        if real.message != practice.message:  # message[CODE] when both have the same code
            aspect = f"message[{real.code}]" if real.code == practice.code else "message"
            out.append((aspect, str(real.message), str(practice.message)))
        if real.body != practice.body:
            out.append(("body", json.dumps(real.body)[:300], json.dumps(practice.body)[:300]))
    elif real.kind == "stream":
        shapes = (real.content_shape, practice.content_shape)
        if None not in shapes and shapes[0] != shapes[1]:
            out.append(("framing", json.dumps(shapes[0])[:400], json.dumps(shapes[1])[:400]))
        elif real.body != practice.body or real.separators != practice.separators:
            first = next((i for i, (a, b) in enumerate(zip(real.body, practice.body, strict=False)) if a != b),
                         min(len(real.body), len(practice.body)))
            out.append(("framing", f"{real.separators} #{first}: " + json.dumps(real.body[first:first + 2])[:400],
                        f"{practice.separators} #{first}: " + json.dumps(practice.body[first:first + 2])[:400]))
    elif real.kind == "text" and real.body != practice.body:
        out.append(("body", str(real.body)[:200], str(practice.body)[:200]))
    return out


# ---------------------------------------------------------------------------------------------- the table

TABLE_HEADING = "### Deviations from the real servers"


@dataclass
class Deviation:
    """One row: in ``dialect`` (fastchat, vllm or both), for cases matching ``cases`` (globs), the
    ``aspects`` (globs) may differ; ``practice`` starts with the practice server's status (and code)."""

    dialect: str
    cases: list[str]
    aspects: list[str]
    real: str
    practice: str
    reason: str
    used: int = field(default=0, compare=False)

    def covers(self, dialect: str, case_id: str, aspect: str) -> bool:
        return (self.dialect in (dialect, "both")
                and any(fnmatch.fnmatchcase(case_id, p) for p in self.cases)
                and any(fnmatch.fnmatchcase(aspect, a.replace("[", "[[]")) for a in self.aspects))

    def practice_status(self) -> tuple[int | None, int | None]:
        """The status (and FastChat/vLLM code) the practice column starts with, if it starts with one."""
        m = re.match(r"\s*(\d{3})(?:\s+(\d{3,5})\b)?", self.practice)
        return (int(m.group(1)), int(m.group(2)) if m.group(2) else None) if m else (None, None)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _patterns(cell: str) -> list[str]:
    """The `quoted` globs of a cell (or its comma-separated words when none is quoted)."""
    quoted = re.findall(r"`([^`]+)`", cell)
    return quoted or [p.strip() for p in cell.split(",") if p.strip()]


def read_deviations(readme: Path = README) -> list[Deviation]:
    """The rows of README.md's deviations table (its section starts with :data:`TABLE_HEADING`)."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(TABLE_HEADING)
    rows: list[Deviation] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = _cells(line)
        if cells[0].lower() == "dialect":
            continue
        dialect, cases, aspects, real, practice, reason = cells[:6]
        rows.append(Deviation(dialect, _patterns(cases), _patterns(aspects), real, practice, reason))
    return rows


@dataclass
class Tally:
    """The counts a run prints: sent, identical, listed deviations, unlisted differences."""

    dialect: str
    sent: int = 0
    identical: int = 0
    listed: int = 0
    unlisted: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"conformance ({self.dialect}): {self.sent} sent, {self.identical} identical, "
                f"{self.listed} differing only as the deviations table lists, {len(self.unlisted)} unlisted")


#: The count lines of this run, printed in the terminal summary by the real suites' conftest.
SUMMARY: list[str] = []


def compare_all(dialect: str, cases: list[Case], real: Callable[[Case], str], practice: Callable[[Case], str],
                table: list[Deviation]) -> Tally:
    """Send every case byte for byte to the real server and to the practice server (base URLs from
    ``real(case)``, ``practice(case)``) and judge the answers against ``table``."""
    results = []
    with httpx.Client(timeout=httpx.Timeout(300, connect=10), trust_env=False) as client:
        for case in cases:
            payload = case.payload()
            results.append((case, observe(client, real(case), case, payload),
                            observe(client, practice(case), case, payload)))
            del payload
    tally = judge(dialect, results, table)
    SUMMARY.append(tally.line())
    return tally


def judge(dialect: str, results: Iterable[tuple[Case, Observation, Observation]],
          table: list[Deviation]) -> Tally:
    """Count the results and collect the differences the table does not list."""
    tally = Tally(dialect)
    for case, real, practice in results:
        tally.sent += 1
        diffs = differences(real, practice)
        if not diffs:
            tally.identical += 1
            continue
        missing = []
        for aspect, a, b in diffs:
            rows = [row for row in table if row.covers(dialect, case.id, aspect)]
            for row in rows:
                row.used += 1
            if not rows:
                missing.append(f"  {aspect}: real {a!r}\n  {' ' * len(aspect)}  practice {b!r}")
        if missing:
            tally.unlisted.append(f"{case.id}\n" + "\n".join(missing))
        else:
            tally.listed += 1
    return tally
