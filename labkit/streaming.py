"""Streaming chat: :func:`chat` for a whole answer (shown live), :func:`stream_chat` for the deltas.

Both work with FastChat and vLLM streams: the role chunk, ``None`` or empty content, the usage chunk
with empty ``choices``, FastChat's mid-stream ``{"error_code": …}`` event and vLLM's ``{"error": …}``
event, dropped connections and stalls. A failure after text has arrived raises
:class:`labkit.StreamError` carrying the partial text; before the first token, a dropped connection
(and a rate limit, within the timeout and announced) is retried. The leaked role prefix is removed as
the text streams (:mod:`labkit.cleanup`).

Nothing is silent: an answer that is not an event stream (a login portal's HTML page, a JSON page)
raises :class:`labkit.UnexpectedResponse` naming what came back, and a stream that ends without a
finish reason raises :class:`labkit.StreamError` (``reason="incomplete"``). Every wait is bounded by
the configured timeout: response headers and error bodies that trickle in, keep-alive comments
(:mod:`labkit.transport` on labkit's clients; :class:`_Watchdog` on a client passed in). An answer
may also be given a deadline for the whole of it (``deadline=`` or ``LABKIT_MAX_SECONDS``).
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import openai

from . import backend
from .cleanup import RolePrefixStripper
from .config import Settings, load_settings
from .display import DisplayMode, LiveView, make_view, notice
from .errors import BackendUnreachable, LabkitError, RateLimited, StreamError, UnexpectedResponse, UsageError
from .failures import (
    decoding_error,
    describe_body,
    error_message,
    timeout_errors,
    translate_error,
    transport_errors,
)
from .i18n import _
from .images import ImageSource
from .messages import Message, user
from .transport import deadline_scope, installed

__all__ = ["Reply", "ChatStream", "stream_chat", "chat"]

NOTE_AFTER = 3.0  # seconds: a longer wait is announced before it starts
_FOREIGN_BODY_LIMIT = 64 * 1024  # bytes of a non-stream answer read to describe it


class _Watchdog:
    """Bounds the wait for the next chunk of an open stream to ``timeout`` seconds, whatever arrives
    in between: the HTTP read timeout restarts on every byte, so SSE keep-alive comments (which the
    SSE decoder swallows) could hold a stream open forever. When no chunk came in time the socket is
    shut down, which wakes the blocked read; the stream then reports the stall."""

    def __init__(self, response: Any, timeout: float) -> None:
        self._response = response
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="labkit-stream-watchdog", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._deadline = time.monotonic() + self._timeout

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.wait(max(0.0, self._deadline - time.monotonic()) + 0.01):
            if time.monotonic() >= self._deadline:
                self.fired = True
                self._cut()
                return

    def _cut(self) -> None:
        stream = (getattr(self._response, "extensions", None) or {}).get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            else:
                self._response.close()
        except Exception:  # already closed: the stream ended by itself meanwhile
            pass


@dataclass
class Reply:
    """A finished (or interrupted) answer.

    ``text`` is cleaned of the leaked role prefix; ``raw`` is exactly what the backend sent.
    ``ttft`` is the time to the first token and ``total_time`` the whole request, in seconds.
    """

    text: str = ""
    raw: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    model: str | None = None
    ttft: float | None = None
    total_time: float = 0.0
    chunks: int = 0
    interrupted: bool = False
    attempts: int = 1

    @property
    def completion_tokens(self) -> int:
        """Tokens generated: from ``usage`` when the backend reported it, else the content chunks.

        Example:
            >>> Reply(chunks=7).completion_tokens, Reply(chunks=7, usage={"completion_tokens": 9}).completion_tokens
            (7, 9)
        """
        return (self.usage or {}).get("completion_tokens", self.chunks)

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed after the first token (``None`` with fewer than two tokens).

        Example:
            >>> Reply(ttft=1.0, total_time=3.0, chunks=51).tokens_per_second
            25.0
        """
        if self.ttft is None or self.completion_tokens < 2 or self.total_time <= self.ttft:
            return None
        return (self.completion_tokens - 1) / (self.total_time - self.ttft)

    def timings(self) -> str:
        """One line of timings, for printing.

        Example:
            >>> Reply(text="hi", ttft=0.5, total_time=2.5, chunks=41).timings()
            'first token 0.50 s · total 2.50 s · 41 tokens · 20.0 tokens/s'
        """
        parts = [_("first token {seconds:.2f} s").format(seconds=self.ttft) if self.ttft is not None
                 else _("no tokens"),
                 _("total {seconds:.2f} s").format(seconds=self.total_time),
                 _("{n} tokens").format(n=self.completion_tokens)]
        if self.tokens_per_second is not None:
            parts.append(_("{rate:.1f} tokens/s").format(rate=self.tokens_per_second))
        return " · ".join(parts)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        # short on purpose: a bare `labkit.chat(...)` at the end of a cell already showed the answer
        state = "interrupted" if self.interrupted else self.finish_reason
        return f"<Reply {state}: {len(self.text)} characters, {self.timings()}>"


def _as_messages(prompt: str | list[Message], image: ImageSource | None) -> list[Message]:
    __tracebackhide__ = True
    if isinstance(prompt, str):
        if not prompt.strip() and image is None:
            raise UsageError(_("The question is empty: ask something, e.g. chat('Describe the image', "
                               "image=path)."))
        return [user(prompt, image)]
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        if image is not None:
            raise UsageError(_("Pass image= only with a text question; with a message list, put the image in a "
                               "message: labkit.user('question', image)."))
        if not prompt:
            raise UsageError(_("The message list is empty: pass a question, e.g. chat('Describe the image', "
                               "image=path)."))
        return prompt
    raise UsageError(_("chat() takes a question (str) or a list of messages, not a {kind}.").format(
        kind=type(prompt).__name__))


class ChatStream:
    """An answer being streamed. Iterate it for cleaned text deltas; ``.reply`` has the result once
    the loop ends (however it ends).

    ``notify`` is called with a sentence before a wait longer than a few seconds (a rate limit's
    ``Retry-After``); ``sleep`` waits (a batch run passes one its stop button can cut short).

    Example:
        >>> stream = stream_chat("Hello", max_tokens=5)  # doctest: +SKIP
        >>> for delta in stream: print(delta, end="")    # doctest: +SKIP
        >>> stream.reply.finish_reason                   # doctest: +SKIP
        'length'
    """

    def __init__(self, messages: list[Message], *, settings: Settings, client: openai.OpenAI | None,
                 options: dict[str, Any], retries: int, deadline: float | None = None) -> None:
        self.messages = messages
        self.settings = settings
        self.deadline = deadline if deadline is not None else settings.max_seconds
        self._deadline_origin = "deadline" if deadline is not None else "LABKIT_MAX_SECONDS"
        self._ends_at: float | None = None
        self._client = client
        self.options = options
        self.retries = retries
        self.reply = Reply(model=settings.model)
        self.notify: Callable[[str], None] = notice
        self.sleep: Callable[[float], Any] = time.sleep
        self._response: Any = None
        self._watchdog: _Watchdog | None = None
        self._stripper = RolePrefixStripper()
        self._shown: list[str] = []
        self._generator: Generator[str, None, None] | None = None

    @property
    def base_url(self) -> str:
        """Where the request goes."""
        return str(self._client.base_url).rstrip("/") if self._client else backend.resolve_base_url(self.settings)

    def close(self) -> None:
        """Stop the generation: closes the HTTP response, so the server stops sending, and completes
        ``.reply`` with what arrived (call it before leaving a loop early).

        Example:
            >>> stream = stream_chat("Tell me a long story")  # doctest: +SKIP
            >>> next(iter(stream)); stream.close()           # doctest: +SKIP
        """
        generator, self._generator = self._generator, None
        if generator is not None:
            generator.close()  # runs the stream's cleanup (which closes the response)
        self._close_response()

    def _close_response(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._response is not None:
            self._response.close()
            self._response = None

    def _open(self) -> Any:
        __tracebackhide__ = True
        if self._client is None:
            self._client = backend.client(self.settings)
        limit = time.monotonic() + self.settings.timeout  # headers and an error body, all within the timeout
        if self._ends_at is not None:
            limit = min(limit, self._ends_at)
        with deadline_scope(at=limit) as scope:
            try:
                return self._client.chat.completions.create(  # type: ignore[call-overload]
                    model=self.settings.model, messages=self.messages, stream=True,
                    stream_options={"include_usage": True}, **self.options)
            except Exception as exc:  # openai/httpx errors become labkit errors with a fix
                raise self._open_failed(exc, scope.expired, scope.received) or translate_error(
                    exc, base_url=self.base_url, model=self.settings.model, api_key=self.settings.api_key,
                    timeout=self.settings.timeout) from None

    def _open_failed(self, exc: Exception, expired: bool, received: int) -> LabkitError | None:
        """The labkit error for a request that got no stream, where it is not :func:`translate_error`'s."""
        if not isinstance(exc, (openai.APIError, LabkitError)):
            unsendable = _unsendable({"messages": self.messages, **self.options})
            if unsendable:  # the request could not even be encoded: nothing was sent
                return UsageError(_("The request cannot be sent: {what}. Nothing was sent; fix that value and ask "
                                    "again.").format(what=unsendable))
        cut = expired or bool(getattr(exc, "cut_by_deadline", False))
        if cut and self._past_deadline():
            return self._over_deadline()
        if cut and received and isinstance(exc, timeout_errors()):
            return BackendUnreachable(_(
                "The server at {url} started answering but its response headers were still arriving after {seconds:g} "
                "s (LABKIT_TIMEOUT; {size:,} bytes came): it answers far too slowly, or it is not an HTTP API server. "
                "Check LABKIT_BASE_URL; if it is right, tell your TA that the backend is stuck.").format(
                url=self.base_url, seconds=self.settings.timeout, size=received))
        return None

    def _past_deadline(self) -> bool:
        return self._ends_at is not None and time.monotonic() >= self._ends_at - 0.05

    def _over_deadline(self) -> StreamError:
        return StreamError(_(
            "The answer from {url} was stopped at the deadline of {seconds:g} s ({origin}): it was still "
            "{state}; {partial}. Ask for a shorter answer (e.g. max_tokens=300), or give it more time "
            "({origin}).").format(
            url=self.base_url, seconds=self.deadline, origin=self._deadline_origin,
            state=_("streaming") if self.reply.chunks else _("waiting for the first word"),
            partial=self._partial_note()), partial_text=self._partial(), reason="deadline")

    def __iter__(self) -> Generator[str, None, None]:
        self._generator = self._attempts()
        return self._generator

    def _attempts(self) -> Generator[str, None, None]:
        __tracebackhide__ = True
        attempt = 0
        self._ends_at = time.monotonic() + self.deadline if self.deadline is not None else None
        while True:
            attempt += 1
            self.reply = Reply(model=self.settings.model, attempts=attempt)
            try:
                yield from self._run_once()
                return
            except StreamError as exc:
                # Only a connection dropped before any text is retried: a stall would just queue the
                # request again behind others, and text already shown must not be asked for twice.
                if self.reply.chunks or exc.reason != "dropped" or attempt > self.retries:
                    raise
                pause = min(4.0, 0.5 * 2 ** (attempt - 1))
                if self._ends_at is not None and time.monotonic() + pause >= self._ends_at:
                    raise  # no time left for another try: the connection error says what happened
                self.sleep(pause)
            except RateLimited as exc:
                if attempt > self.retries:
                    raise
                self._wait_for_rate_limit(exc, attempt)

    def _wait_for_rate_limit(self, exc: RateLimited, attempt: int) -> None:
        """Wait as the backend asked, but never longer than the timeout, and never silently."""
        __tracebackhide__ = True
        wait = exc.retry_after if exc.retry_after is not None else min(4.0, 0.5 * 2 ** (attempt - 1))
        if wait > self.settings.timeout:
            # Waiting longer than the configured timeout would break the promise that every wait is
            # bounded by it: say how long the backend asked for and let the person decide.
            raise RateLimited(_(
                "The backend at {url} is rate-limiting (HTTP {status}) and asks to wait {wait:g} s, longer than "
                "LABKIT_TIMEOUT ({timeout:g} s). Try again in {wait:.0f} s, or lower the request rate.").format(
                url=self.base_url, status=exc.status, wait=wait, timeout=self.settings.timeout),
                status=exc.status, body=exc.body, retry_after=wait) from None
        if self._ends_at is not None and time.monotonic() + wait >= self._ends_at:
            raise self._over_deadline()
        if wait > NOTE_AFTER:
            self.notify(_("labkit: rate-limited: retrying in {seconds:.0f} s, press stop to cancel").format(
                seconds=wait))
        self.sleep(wait)

    def _run_once(self) -> Iterator[str]:
        __tracebackhide__ = True
        reply = self.reply
        stripper = self._stripper = RolePrefixStripper()
        raw: list[str] = []  # joined once at the end: += on a long text is O(n²)
        shown = self._shown = []  # also read by _partial() when the stream breaks
        start = time.perf_counter()
        self._response = self._open()
        http = getattr(self._response, "response", None)
        # labkit's own clients bound each read by a deadline (transport); a client passed in gets a thread
        watchdog = self._watchdog = _Watchdog(http, self.settings.timeout) \
            if http is not None and not installed(self._client) else None
        events = 0
        timeout, ends_at = self.settings.timeout, self._ends_at
        chunks = iter(self._response)
        try:
            if http is not None and not _is_event_stream(http):
                raise self._foreign(http)
            while True:
                limit = time.monotonic() + timeout  # the next chunk within the timeout, keep-alives or not
                if ends_at is not None and ends_at < limit:
                    limit = ends_at
                with deadline_scope(at=limit):
                    try:
                        chunk = next(chunks)
                    except StopIteration:
                        break
                events += 1
                if watchdog is not None:
                    watchdog.kick()
                if ends_at is not None and time.monotonic() > ends_at:
                    raise self._over_deadline()
                delta = self._content_of(chunk)
                if not delta:
                    continue
                if reply.ttft is None:
                    reply.ttft = time.perf_counter() - start
                raw.append(delta)
                reply.chunks += 1
                visible = stripper.feed(delta)
                if visible:
                    shown.append(visible)
                    yield visible
            if reply.finish_reason is None:
                if watchdog is not None and watchdog.fired:  # the watchdog ended a body read to its end
                    raise self._stalled(events)
                raise self._unfinished(events, http)
            tail = stripper.finish()
            if tail:
                shown.append(tail)
                yield tail
            if not "".join(shown).strip():
                raise self._empty(reply.finish_reason, "".join(raw))
        except KeyboardInterrupt:
            reply.interrupted = True
            reply.finish_reason = reply.finish_reason or "interrupted"
            raise
        except openai.APIStatusError as exc:  # vLLM's {"error": …} event: openai raises on it
            message, code = error_message(exc.body)
            raise self._server_error(message or exc.message, code) from None
        except json.JSONDecodeError as exc:  # an event that is not JSON: the stream is not an OpenAI stream
            raise self._not_json(exc.doc) from None
        except timeout_errors():
            if self._past_deadline():
                raise self._over_deadline() from None
            raise self._stalled(events) from None
        except transport_errors() as exc:
            if watchdog is not None and watchdog.fired:  # the watchdog cut a stream that sent no chunk in time
                raise self._stalled(events) from None
            garbled = decoding_error(exc)
            if garbled is not None:
                raise self._garbled(http, garbled) from None
            raise self._broken() from None
        except openai.APIError as exc:  # an error event of another shape
            message, code = error_message(exc.body)
            raise self._server_error(message or exc.message, code) from None
        finally:
            # the reply is complete however the stream ended; text held back at the start belongs to it
            reply.raw = "".join(raw)
            reply.text = "".join(shown) + stripper.finish()
            reply.total_time = time.perf_counter() - start
            self._close_response()

    def _content_of(self, chunk: Any) -> str:
        """The text in a chunk; also notes the finish reason, the model and usage when they come."""
        choices = chunk.choices
        if choices:  # the common case, kept short: it runs once per token
            choice = choices[0]
            if choice.finish_reason:
                self.reply.finish_reason = choice.finish_reason
                self.reply.model = chunk.model or self.reply.model
                self._note_usage(chunk)  # some servers put usage on the finish chunk
            delta = choice.delta
            return (delta.content or "") if delta is not None else ""
        self._note_usage(chunk)  # vLLM's usage chunk has empty choices
        extra = getattr(chunk, "model_extra", None) or {}
        if "error_code" in extra:  # FastChat's mid-stream error event: openai does not raise on it
            raise self._server_error(str(extra.get("text", "")), extra["error_code"])
        return ""

    def _note_usage(self, chunk: Any) -> None:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            names = ("prompt_tokens", "completion_tokens", "total_tokens")
            self.reply.usage = {k: int(getattr(usage, k)) for k in names if getattr(usage, k, None) is not None}

    def _partial(self) -> str:
        """The cleaned text so far, including what the prefix stripper still holds back."""
        return "".join(self._shown) + self._stripper.pending

    def _partial_note(self) -> str:
        n = len(self._partial())
        if n:
            return _("{n} characters arrived before that (kept in the error's .partial_text)").format(n=n)
        return _("no text had arrived yet")

    def _foreign(self, http: Any) -> UnexpectedResponse:
        """The answer is not an event stream: read a bounded part of it and say what it is."""
        head = bytearray()
        try:
            with deadline_scope(self.settings.timeout):
                for piece in http.iter_bytes():
                    head += piece
                    if len(head) >= _FOREIGN_BODY_LIMIT:
                        break
        except Exception:  # a broken, slow or cut body still tells what it was from its start
            pass
        what = describe_body(http.headers.get("content-type"), bytes(head[:_FOREIGN_BODY_LIMIT]))
        return UnexpectedResponse(_(
            "The server at {url} answered with {what}, not a chat stream. LABKIT_BASE_URL probably points at "
            "another service (a login portal, a web page, the wrong port): set it to the backend's API URL, "
            "e.g. http://HOST:8008/api/v1 (the course backend) or http://HOST:8000/v1 (vLLM). If a login page "
            "came back, log in to the network first.").format(url=self.base_url, what=what),
            status=http.status_code, body=what)

    def _unfinished(self, events: int, http: Any) -> UnexpectedResponse | StreamError:
        """The stream ended cleanly but never said it was finished."""
        if events == 0:
            size = getattr(http, "num_bytes_downloaded", 0) if http is not None else 0
            return UnexpectedResponse(_(
                "The server at {url} opened an event stream but sent no answer events ({size:,} bytes: empty "
                "events or keep-alive comments only) and closed it. Check that LABKIT_BASE_URL is the chat "
                "backend, then ask again; if it keeps happening, tell your TA.").format(url=self.base_url, size=size),
                status=getattr(http, "status_code", None))
        return StreamError(_(
            "The answer from {url} was cut off: the stream ended without a finish reason (a proxy or the "
            "backend closed it early); {partial}. Ask again; if it keeps happening, tell your TA.").format(
            url=self.base_url, partial=self._partial_note()), partial_text=self._partial(), reason="incomplete")

    def _empty(self, finish_reason: str, raw: str) -> StreamError:
        """The stream finished properly, but without a word of answer: never an empty success."""
        came = _("it sent only {raw}, which labkit removes as the leaked role prefix").format(raw=repr(raw)[:80]) \
            if raw.strip() else _("it sent no text at all")
        if finish_reason == "length":
            message = _(
                "The answer from {url} ended before its first word (finish_reason 'length'; {came}): the "
                "question, the history and the image filled the model's context, or max_tokens is too small. "
                "Ask with a shorter history (labkit.Conversation trims it for you), a smaller image or a larger "
                "max_tokens.")
        else:
            message = _(
                "The backend at {url} finished (finish_reason {finish!r}) without an answer ({came}). Ask again "
                "or rephrase the question; if it keeps happening, tell your TA.")
        return StreamError(message.format(url=self.base_url, came=came, finish=finish_reason),
                           partial_text=self._partial(), reason="empty", finish_reason=finish_reason)

    def _not_json(self, data: str) -> StreamError:
        return StreamError(_(
            "The stream from {url} carried an event that is not JSON: {event}; {partial}. The server does not speak "
            "the OpenAI streaming protocol, or a proxy changed the stream: check LABKIT_BASE_URL; if it is the "
            "course backend, tell your TA.").format(
            url=self.base_url, event=repr(" ".join(data.split())[:80]), partial=self._partial_note()),
            partial_text=self._partial(), reason="malformed", body=data[:_FOREIGN_BODY_LIMIT])

    def _garbled(self, http: Any, exc: BaseException) -> StreamError:
        encoding = http.headers.get("content-encoding", "?") if http is not None else "?"
        return StreamError(_(
            "The answer from {url} cannot be decoded: it is marked Content-Encoding: {encoding}, but the bytes are "
            "not ({error}); {partial}. The server or a proxy on the way garbles it: ask again; if it keeps "
            "happening, tell your TA (a proxy that compresses streams is the usual cause).").format(
            url=self.base_url, encoding=encoding, error=str(exc)[:80] or type(exc).__name__,
            partial=self._partial_note()), partial_text=self._partial(), reason="malformed")

    def _broken(self) -> StreamError:
        return StreamError(_(
            "The answer from {url} broke off: the connection dropped; {partial}. Ask again; if it keeps "
            "happening, the backend may be restarting.").format(url=self.base_url, partial=self._partial_note()),
            partial_text=self._partial(), reason="dropped")

    def _stalled(self, events: int = 1) -> StreamError:
        return StreamError(_(
            "The answer from {url} stalled: nothing arrived for {seconds:g} s (LABKIT_TIMEOUT); {partial}. "
            "Ask again, or raise LABKIT_TIMEOUT if the backend is known to be slow.").format(
            url=self.base_url, seconds=self.settings.timeout, partial=self._partial_note()),
            partial_text=self._partial(), reason="stalled")

    def _server_error(self, message: str, code: Any) -> StreamError:
        said = " ".join(message.replace("**", "").split())  # one line, without Markdown emphasis
        return StreamError(_(
            "The backend reported an error mid-answer (code {code}): {said}; {partial}. Ask again in a "
            "moment.").format(code=code, said=said, partial=self._partial_note()),
            partial_text=self._partial(), reason="backend", body={"message": message, "code": code})


def _unsendable(value: Any, where: str = "") -> str | None:
    """Where a request holds a value that cannot be sent as JSON: a number that is not finite, or
    text with a lone surrogate (a character cut in half); ``None`` when there is none."""
    if isinstance(value, float) and not math.isfinite(value):
        return _("{where} is {value!r}, which JSON cannot carry: pass a finite number").format(
            where=where, value=value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return _("{where} holds a lone surrogate {char!r} at position {at} (half of a character, e.g. from "
                     "text cut in the middle of an emoji), which cannot be sent as UTF-8: remove it, e.g. with "
                     "text.encode('utf-8', 'replace').decode()").format(
                where=where, char=value[exc.start], at=exc.start)
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)  # type: ignore[assignment]
    else:
        return None
    for key, item in items:
        inner = f"{where}[{key!r}]" if where else str(key)
        found = _unsendable(item, inner)
        if found:
            return found
    return None


def _is_event_stream(http: Any) -> bool:
    """Whether an answer is a server-sent-event stream (a missing content type is given the benefit of
    the doubt: the events, or their absence, then tell)."""
    kind = http.headers.get("content-type", "")
    return not kind or kind.split(";")[0].strip().lower() == "text/event-stream"


def stream_chat(
    prompt: str | list[Message],
    image: ImageSource | None = None,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | list[str] | None = None,
    client: openai.OpenAI | None = None,
    settings: Settings | None = None,
    retries: int = 1,
    deadline: float | None = None,
    **extra: Any,
) -> ChatStream:
    """Start a streaming answer; iterate the result for cleaned text deltas.

    ``prompt`` is a question (with an optional ``image``) or a list of messages. After the loop,
    ``stream.reply`` holds the text, finish reason, usage and timings. Failures raise
    :class:`labkit.StreamError` (with ``partial_text``) or another :class:`labkit.LabkitError`.
    Extra keyword arguments (``extra_headers=…``, ``seed=…``) go to the openai client. ``deadline``
    is the most the whole answer may take, in seconds (default ``LABKIT_MAX_SECONDS``, else none):
    past it the answer is stopped with :class:`labkit.StreamError` (``reason="deadline"``).

    Example:
        >>> stream = stream_chat("What is in this image?", image="images/chelsea.jpg")  # doctest: +SKIP
        >>> for delta in stream:                                                      # doctest: +SKIP
        ...     print(delta, end="", flush=True)
    """
    __tracebackhide__ = True
    clash = sorted({"messages", "stream", "stream_options"} & set(extra))
    if clash:
        raise UsageError(_("stream_chat sets {names} itself: leave them out (pass the question or a message list "
                           "as the first argument).").format(names=", ".join(clash)))
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, (int, float))
                                 or not (deadline > 0 and math.isfinite(deadline))):
        raise UsageError(_("deadline={value!r} must be a positive number of seconds (the most the whole answer may "
                           "take), e.g. deadline=60.").format(value=deadline))
    settings = settings or load_settings()
    if model:
        settings = replace(settings, model=model)
    options = {k: v for k, v in dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop).items()
               if v is not None}
    options.update(extra)
    return ChatStream(_as_messages(prompt, image), settings=settings, client=client, options=options, retries=retries,
                      deadline=deadline)


def chat(
    prompt: str | list[Message],
    image: ImageSource | None = None,
    *,
    display: bool | DisplayMode | LiveView = True,
    **options: Any,
) -> Reply:
    """Ask a question (optionally about an image) and return the whole :class:`Reply`.

    In Jupyter the answer appears live as Markdown; in a terminal it prints as it arrives;
    ``display=False`` keeps quiet. Jupyter's stop button (or Ctrl-C) stops the generation and returns
    the partial reply with ``interrupted=True``. Other options are those of :func:`stream_chat`.

    Example:
        >>> reply = chat("Describe the image to me", image="images/chelsea.jpg", display=False)  # doctest: +SKIP
        >>> reply.text, reply.finish_reason, reply.timings()                                     # doctest: +SKIP
    """
    __tracebackhide__ = True
    stream = stream_chat(prompt, image, **options)
    view = make_view(display)
    deltas = iter(stream)  # a generator: close() runs the stream's cleanup
    try:
        for delta in deltas:
            view.update(delta)
    except KeyboardInterrupt:
        deltas.close()  # the response is closed, timings are set
        reply = stream.reply
        reply.interrupted, reply.finish_reason = True, "interrupted"
        view.finish(reply.text, _("⏹ stopped: the partial answer is kept in the returned reply's .text"))
        return reply
    except StreamError as exc:
        view.finish(exc.partial_text, _("⚠ the answer broke off (see the error below)"))
        raise
    view.finish(stream.reply.text)
    return stream.reply
