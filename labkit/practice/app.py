"""The practice server's ASGI application (Starlette)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .brain import compose_answer, split_tokens
from .config import FaultConfig, PracticeConfig, parse_faults
from .dialects import DONE, FastChatDialect, VLLMDialect, content_event, dialect_for
from .engine import Engine
from .validation import ChatRequest, Problem, parse_request

__all__ = ["create_app", "FAULT_HEADER", "LEAK"]

LEAK = "assistant\n"
FAULT_HEADER = "x-practice-fault"
#: FastChat's SERVER_ERROR_MSG, the start of every worker error it relays.
SERVER_ERROR = "**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE.**"
#: What CORSMiddleware(allow_methods=["*"]) allows in the FastAPI/Starlette versions both real servers run.
_CORS_METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
#: Bodies above this size are read at most two at a time (no size is refused: no real server refuses one).
BIG_BODY = 4 * 1024 * 1024


class DropConnection(Exception):
    """Raised inside a stream to make the server cut the connection without finishing it."""


class _Admission:
    """Newcomers first: streams that already sent a token wait while requests are still being read,
    validated or sending their first token (as vLLM schedules prefills before more decoding)."""

    def __init__(self) -> None:
        self.waiting = 0
        self._clear: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._clear is None:
            self._clear = asyncio.Event()
            self._clear.set()
        return self._clear

    def arrive(self) -> None:
        self.waiting += 1
        self._event().clear()

    def served(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self._event().set()

    async def after_newcomers(self, limit: float = 0.25) -> None:
        """Wait (at most ``limit`` seconds, so a request that never starts streaming can't stall the
        rest) until no request is waiting for its first token."""
        if self.waiting:
            try:
                await asyncio.wait_for(self._event().wait(), limit)
            except asyncio.TimeoutError:
                pass


_log = logging.getLogger("uvicorn.error")


class _RateWindows:
    """Request times of the last minute per client, for ``--rate-limit``: a bounded map. Clients idle
    for a minute are forgotten; beyond ``max_clients`` the least recently seen client that is not
    limited goes first, and a limited client only when every client held is limited (the least
    recently limited first), so requests from thousands of other addresses cannot make the server
    forget a client it is limiting."""

    def __init__(self, max_clients: int = 4096) -> None:
        self._free: OrderedDict[str, deque[float]] = OrderedDict()  # not limited, least recently seen first
        self._limited: OrderedDict[str, deque[float]] = OrderedDict()  # least recently limited first
        self._max = max_clients

    def __len__(self) -> int:
        return len(self._free) + len(self._limited)

    def admit(self, client: str, limit: int, now: float) -> int | None:
        """Record a request; ``None`` when admitted, else the seconds until one is allowed."""
        for held in (self._free, self._limited):  # forget clients whose newest request is over a minute old
            while held:
                key, window = next(iter(held.items()))
                if window and now - window[-1] <= 60:
                    break
                del held[key]
        window = self._free.pop(client, None) or self._limited.pop(client, None) or deque()
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= limit:
            self._limited[client] = window  # most recently limited last
            retry: int | None = max(1, int(61 - (now - window[0])))
        else:
            window.append(now)
            self._free[client] = window  # most recently seen last
            retry = None
        while len(self) > self._max:  # never the client just admitted while a limited one could go instead
            (self._free if len(self._free) > 1 or not self._limited else self._limited).popitem(last=False)
        return retry


class _State:
    def __init__(self, config: PracticeConfig) -> None:
        self.config = config
        self.admission = _Admission()
        self.dialect: FastChatDialect | VLLMDialect = dialect_for(config.dialect)
        self.faulted_requests = 0
        self.rate = _RateWindows()
        self.engine = Engine(config)
        # Decoding and analysing images is the heavy part of a request: a few at a time, in threads,
        # so that memory stays bounded and the event loop (and /health) stays responsive.
        self.heavy = anyio.CapacityLimiter(2)
        # Big bodies (up to any size: no real server limits it) are read and parsed two at a time, so the
        # memory they take stays bounded however many arrive together.
        self.big_bodies = anyio.CapacityLimiter(2)


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def _active_faults(state: _State, faults: FaultConfig) -> FaultConfig:
    """The faults for this request: none once ``times`` requests have had them."""
    if not faults.any():
        return faults
    if faults.times is not None and state.faulted_requests >= faults.times:
        return FaultConfig(rate_limit=faults.rate_limit)
    state.faulted_requests += 1
    return faults


def _check_access(state: _State, request: Request, faults: FaultConfig) -> Response | None:
    config, dialect = state.config, state.dialect
    key = _bearer(request)
    if config.api_keys and key not in config.api_keys:
        return dialect.auth_error()
    if faults.fail_status:
        if faults.fail_status == 429:
            return dialect.error(429, "Rate limit reached (injected fault): wait a moment and retry", code=42901,
                                 kind="RateLimitError")
        return dialect.error(503, "The model worker is unavailable (injected fault): retry in a few seconds",
                             code=50005, kind="ServiceUnavailableError")
    if faults.rate_limit:
        # Per API key when keys are enforced; otherwise per client address, so that rotating made-up
        # keys gets around nothing.
        client = f"key:{key}" if config.api_keys else f"addr:{request.client.host if request.client else '?'}"
        retry = state.rate.admit(client, faults.rate_limit, time.monotonic())
        if retry is not None:
            per = "API key" if config.api_keys else "client"
            response = dialect.error(
                429, f"Rate limit: at most {faults.rate_limit} requests per minute per {per}; retry in {retry} s",
                code=42901, kind="RateLimitError")
            response.headers["retry-after"] = str(retry)
            return response
    return None


def _too_big(size: int, limit: int) -> Problem:
    mb = 1024 * 1024
    return Problem(413, f"The request body is {size / mb:.1f} MB, over the {limit / mb:.0f} MB limit: send smaller "
                        "images (labkit.encode_image downsizes them to what the model can see)")


async def _read_body(request: Request, limit: int | None, big: anyio.CapacityLimiter) -> bytes:
    """The whole body. From :data:`BIG_BODY` bytes on, the caller must hold a place in ``big`` (taken
    here, released by the caller with ``big.release_on_behalf_of(request)``)."""
    declared = request.headers.get("content-length", "")
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise _too_big(int(declared), limit)
    chunks, size, holding = [], 0, False
    if declared.isdigit() and int(declared) > BIG_BODY:
        await big.acquire_on_behalf_of(request)
        holding = True
    async for chunk in request.stream():
        size += len(chunk)
        if limit is not None and size > limit:
            raise _too_big(size, limit)
        if size > BIG_BODY and not holding:
            await big.acquire_on_behalf_of(request)
            holding = True
        chunks.append(chunk)
    return b"".join(chunks)


def _json_content_type(value: str) -> bool:
    """Whether FastAPI reads a body with this Content-Type as JSON (none, application/json or …+json)."""
    main, _, sub = value.split(";")[0].strip().lower().partition("/")
    return not value.strip() or (main == "application" and (sub == "json" or sub.endswith("+json")))


async def _broken_stream(state: _State, req: ChatRequest) -> AsyncIterator[bytes]:
    """FastChat's front with a worker that fails after the stream began: the role chunk, then the
    worker's 50001 error event, or (a crash in the worker) a dropped connection."""
    dialect = state.dialect
    try:
        yield dialect.role_chunk(dialect.new_id(), int(time.time()), req.model)
    finally:
        state.admission.served()
    if req.drop:
        _log.warning("practice server: %s; the connection is dropped, as on FastChat's front", req.drop)
        raise DropConnection
    yield dialect.stream_error(f"{SERVER_ERROR}\n\n({req.stream_error})", 50001) + DONE


def _answer(req: ChatRequest, leak: bool, hold_back: bool = False) -> tuple[list[str], str, dict[str, int]]:
    """The answer's stream pieces, finish reason and usage (completion tokens = tokens generated).

    The model generates token by token; after each one the text so far is cut before the first stop
    string, if any, and that ends the answer (``"stop"``), as vLLM's stop handling does. A piece is
    what the text gained with that token: FastChat relays each gain and nothing for a token that only
    completed a stop string. ``hold_back`` is vLLM's own streaming, which keeps back as many characters
    as the longest stop string could still need, so no start of a stop string is ever sent; its last
    piece goes in the finish chunk and may be empty.
    """
    tokens = split_tokens(compose_answer(req.prompt))
    if leak and tokens:
        tokens[0] = LEAK + tokens[0]  # the leaked prefix arrives glued to the first token, as captured
    held = max((len(s) for s in req.stop), default=1) - 1 if hold_back else 0
    pieces: list[str] = []
    text, sent, used, reason = "", 0, 0, "length"
    for i, token in enumerate(tokens[: req.max_tokens]):
        text += token
        used = i + 1
        cut = min((text.find(s) for s in req.stop if s in text), default=-1)
        done = cut >= 0 or used == len(tokens) or used >= req.max_tokens
        if cut >= 0:
            text = text[:cut]
        if cut >= 0 or used == len(tokens):
            reason = "stop"
        visible = len(text) if done else max(sent, len(text) - held)
        if visible > sent or (done and hold_back):
            pieces.append(text[sent:visible])
            sent = visible
        if done:
            break
    usage = {"prompt_tokens": req.prompt_tokens, "completion_tokens": used,
             "total_tokens": req.prompt_tokens + used}
    return pieces, reason, usage


async def _stream(state: _State, req: ChatRequest, faults: FaultConfig) -> AsyncIterator[bytes]:
    """The event stream. Unpaced (``fast``), events are coalesced into fewer writes after the first
    token, and streams let newly arrived requests have their first token before they go on; the bytes
    on the wire are the same."""
    config, dialect = state.config, state.dialect
    admitted, decoding = True, False
    try:
        cid, created, model = dialect.new_id(), int(time.time()), req.model
        tokens, reason, usage = _answer(req, config.leak_role_prefix, hold_back=dialect.last_token_in_finish)
        paced = config.paced
        sent = len(tokens) - 1 if dialect.last_token_in_finish else len(tokens)
        batch: list[bytes] = []
        finishes: list[bytes] = []
        # FastChat streams the n choices one after another, each with its role chunk, then all their
        # finish chunks (vLLM's dialect has one choice).
        for k in range(req.n):
            frame = dialect.content_frame(cid, created, model, index=k)
            role = dialect.role_chunk(cid, created, model, index=k)
            if k > 0:
                batch.append(role)
                role = b""
            elif config.paced or not tokens or _fault_at(0, faults):
                yield role
                role = b""
            if paced and k == 0:
                state.admission.served()
                admitted = False
                await state.engine.prefill(req.prompt_tokens, len(req.prompt.images))  # queued behind other prefills
                state.engine.running += 1  # in the decoding batch until the stream ends
                decoding = True
            for i in range(len(tokens) + 1):
                fault = _fault_at(i, faults) if k == 0 else None
                if (fault or i >= sent or paced) and batch:
                    yield b"".join(batch)
                    batch = []
                if fault == "drop":
                    raise DropConnection
                if fault == "error":
                    yield dialect.stream_error("**NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH "
                                               "THIS PAGE.**\n\n(CUDA out of memory; injected fault)", 50002) + DONE
                    return
                if fault == "stall":
                    await asyncio.sleep(faults.stall_seconds)
                if i >= sent:
                    break
                event = content_event(frame, tokens[i])
                if paced:
                    yield event
                    await asyncio.sleep(state.engine.token_delay())  # slower the more streams share the batch
                elif admitted:
                    yield role + event  # the first token goes out at once (with the role chunk, unpaced)
                    role = b""
                    state.admission.served()
                    admitted = False
                    await state.admission.after_newcomers()
                else:
                    batch.append(event)
                    if len(batch) == 64:
                        yield b"".join(batch)
                        batch = []
                        await state.admission.after_newcomers()
                        await asyncio.sleep(0)
            if role:  # no content chunk went out (vLLM, max_tokens 1: the one token rides in the finish chunk)
                batch.insert(0, role)
                role = b""
            final = tokens[-1] if tokens and dialect.last_token_in_finish else None
            finishes.append(dialect.finish_chunk(cid, created, model, reason, final, req.include_usage, index=k))
        tail = b"".join(batch) + b"".join(finishes)
        if req.include_usage:
            tail += dialect.usage_chunk(cid, created, model, usage) or b""
        yield tail + DONE
    finally:
        if admitted:
            state.admission.served()
        if decoding:
            state.engine.running -= 1


def _fault_at(i: int, faults: FaultConfig) -> str | None:
    """Which injected fault, if any, happens before content token ``i``."""
    if faults.drop_after is not None and i >= faults.drop_after:
        return "drop"
    if faults.error_after is not None and i >= faults.error_after:
        return "error"
    if faults.stall_after is not None and i == faults.stall_after:
        return "stall"
    return None


def create_app(config: PracticeConfig | None = None) -> Starlette:
    """The practice server as an ASGI app, to run with uvicorn (``labkit practice`` does).

    Example:
        >>> app = create_app(PracticeConfig(fast=True))
        >>> sorted({r.path for r in app.routes})[:2]
        ['/api/v1/chat/completions', '/api/v1/models']
    """
    config = config or PracticeConfig()
    state = _State(config)

    async def chat_completions(request: Request) -> Response:
        state.admission.arrive()
        streaming = False
        try:
            response = await _respond(request)
            streaming = isinstance(response, StreamingResponse)
            return response
        finally:
            if not streaming:
                state.admission.served()  # a stream leaves the queue with its first token instead

    async def _respond(request: Request) -> Response:
        dialect = state.dialect
        header = request.headers.get(FAULT_HEADER)
        if header and config.fault_header:  # a fault for this one request (server-wide faults aside)
            try:
                faults = parse_faults(header, FaultConfig(rate_limit=config.faults.rate_limit))
            except ValueError as exc:
                return dialect.error(400, f"{FAULT_HEADER} header: {exc}", code=40001)
        else:
            faults = _active_faults(state, config.faults)
        refused = _check_access(state, request, faults)
        if refused is not None:
            return refused
        try:
            ctype = request.headers.get("content-type", "")
            if config.dialect == "fastchat" and not _json_content_type(ctype):
                raise Problem(400, f"The request's Content-Type is {ctype!r}, so the body is not read as JSON: "
                                   "send it with Content-Type: application/json", param="body")
            if config.dialect == "vllm" and ctype.lower().split(";")[0] != "application/json":  # vLLM's own words
                raise Problem(400, "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed")
            raw = await _read_body(request, config.max_body_bytes, state.big_bodies)
            req = await anyio.to_thread.run_sync(parse_request, raw, config, limiter=state.heavy)
        except Problem as p:
            return dialect.error(p.status, p.message, code=p.code, kind=p.kind, param=p.param)
        except ClientDisconnect:  # the client went away mid-body (or was cut: the guard logs that): nothing to answer
            _log.debug("practice server: a client disconnected before sending the whole request")
            return Response(status_code=400)
        finally:
            try:
                state.big_bodies.release_on_behalf_of(request)
            except RuntimeError:  # it held no place
                pass
        if req.drop or req.stream_error:
            if req.stream:
                return StreamingResponse(_broken_stream(state, req), media_type="text/event-stream")
            if req.drop:
                return PlainTextResponse("Internal Server Error", status_code=500)
            return dialect.error(400, f"{SERVER_ERROR}\n\n({req.stream_error})", code=50001)
        if req.stream:
            return StreamingResponse(_stream(state, req, faults), media_type="text/event-stream")
        tokens, reason, usage = _answer(req, config.leak_role_prefix)
        if config.paced:
            await asyncio.sleep(config.ttft + len(tokens) / config.tokens_per_second)
        return JSONResponse(dialect.completion(dialect.new_id(), int(time.time()), req.model, "".join(tokens),
                                               reason, usage, req.n))

    async def models(request: Request) -> Response:
        if config.api_keys and _bearer(request) not in config.api_keys:
            return state.dialect.auth_error()
        return JSONResponse({"object": "list", "data": [state.dialect.model_card(config.model, config.max_model_len)]})

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    routes = [Route("/health", health, methods=["GET"])]
    for base in config.base_paths:
        prefix = "/" + base.strip("/") if base.strip("/") else ""
        routes.append(Route(f"{prefix}/chat/completions", chat_completions, methods=["POST"]))
        routes.append(Route(f"{prefix}/models", models, methods=["GET"]))
        routes[-1].methods.discard("HEAD")  # type: ignore[union-attr]  # FastAPI routes GET only: HEAD is a 405
    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "Not Found"}, status_code=404)  # as FastAPI (both real servers) says

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=getattr(exc, "headers", None))

    # FastChat answers browsers' CORS preflights and allows any origin (its defaults: "*"); vLLM 0.32 allows
    # no origin unless told (--allowed-origins), so its preflights get Starlette's 400.
    if config.dialect == "fastchat":
        cors = Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=_CORS_METHODS, allow_headers=["*"])
    else:
        cors = Middleware(CORSMiddleware, allow_origins=[], allow_methods=["*"], allow_headers=["*"])
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed}, middleware=[cors])
