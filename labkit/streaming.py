"""Streaming chat: :func:`chat` for a whole answer (shown live), :func:`stream_chat` for the deltas.

Both work with FastChat and vLLM streams: the role chunk, ``None`` or empty content, the usage chunk
with empty ``choices``, FastChat's mid-stream ``{"error_code": …}`` event and vLLM's ``{"error": …}``
event, dropped connections and stalls. A failure after text has arrived raises
:class:`labkit.StreamError` carrying the partial text; before the first token, the request is
retried. The leaked role prefix is removed as the text streams (:mod:`labkit.cleanup`).
"""

from __future__ import annotations

# `__tracebackhide__ = True` in a function makes IPython leave its frame out of tracebacks, so a
# student sees their own line and labkit's message, not labkit's internals.

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import openai

from .cleanup import RolePrefixStripper
from .config import Settings, client as make_client, load_settings, resolve_base_url
from .display import DisplayMode, LiveView, make_view
from .errors import LabkitError, StreamError
from .failures import error_message, timeout_errors, transport_errors, translate_error
from .images import ImageSource
from .messages import Message, user

__all__ = ["Reply", "ChatStream", "stream_chat", "chat"]


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
        parts = [f"first token {self.ttft:.2f} s" if self.ttft is not None else "no tokens",
                 f"total {self.total_time:.2f} s", f"{self.completion_tokens} tokens"]
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:.1f} tokens/s")
        return " · ".join(parts)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        # short on purpose: a bare `labkit.chat(...)` at the end of a cell already showed the answer
        state = "interrupted" if self.interrupted else self.finish_reason
        return f"<Reply {state}: {len(self.text)} characters, {self.timings()}>"


def _as_messages(prompt: str | list[Message], image: ImageSource | None) -> list[Message]:
    if isinstance(prompt, str):
        return [user(prompt, image)]
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        if image is not None:
            raise LabkitError("Pass image= only with a text question; with a message list, put the image in a "
                              "message: labkit.user('question', image).")
        if not prompt:
            raise LabkitError("The message list is empty: pass a question, e.g. chat('Describe the image', image=path).")
        return prompt
    raise LabkitError(f"chat() takes a question (str) or a list of messages, not a {type(prompt).__name__}.")


class ChatStream:
    """An answer being streamed. Iterate it for cleaned text deltas; ``.reply`` has the result once
    the loop ends (however it ends).

    Example:
        >>> stream = stream_chat("Hello", max_tokens=5)  # doctest: +SKIP
        >>> for delta in stream: print(delta, end="")    # doctest: +SKIP
        >>> stream.reply.finish_reason                   # doctest: +SKIP
        'length'
    """

    def __init__(self, messages: list[Message], *, settings: Settings, client: openai.OpenAI | None,
                 options: dict[str, Any], retries: int) -> None:
        self.messages = messages
        self.settings = settings
        self._client = client
        self.options = options
        self.retries = retries
        self.reply = Reply(model=settings.model)
        self._response: Any = None
        self._stripper = RolePrefixStripper()
        self._shown: list[str] = []
        self._generator: Generator[str, None, None] | None = None

    @property
    def base_url(self) -> str:
        """Where the request goes."""
        return str(self._client.base_url).rstrip("/") if self._client else resolve_base_url(self.settings)

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
        if self._response is not None:
            self._response.close()
            self._response = None

    def _open(self) -> Any:
        __tracebackhide__ = True
        if self._client is None:
            self._client = make_client(self.settings)
        try:
            return self._client.chat.completions.create(  # type: ignore[call-overload]
                model=self.settings.model, messages=self.messages, stream=True,
                stream_options={"include_usage": True}, **self.options)
        except Exception as exc:  # openai/httpx errors become labkit errors with a fix
            raise translate_error(exc, base_url=self.base_url, model=self.settings.model,
                                  api_key=self.settings.api_key) from None

    def __iter__(self) -> Generator[str, None, None]:
        self._generator = self._attempts()
        return self._generator

    def _attempts(self) -> Generator[str, None, None]:
        __tracebackhide__ = True
        attempt = 0
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
                time.sleep(min(4.0, 0.5 * 2 ** (attempt - 1)))

    def _run_once(self) -> Iterator[str]:
        __tracebackhide__ = True
        reply = self.reply
        stripper = self._stripper = RolePrefixStripper()
        raw: list[str] = []  # joined once at the end: += on a long text is O(n²)
        shown = self._shown = []  # also read by _partial() when the stream breaks
        start = time.perf_counter()
        self._response = self._open()
        try:
            for chunk in self._response:
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
            tail = stripper.finish()
            if tail:
                shown.append(tail)
                yield tail
        except KeyboardInterrupt:
            reply.interrupted = True
            reply.finish_reason = reply.finish_reason or "interrupted"
            raise
        except StreamError:
            raise
        except openai.APITimeoutError:
            raise self._stalled() from None
        except openai.APIConnectionError:
            raise self._broken() from None
        except openai.APIError as exc:  # vLLM's {"error": …} event: openai raises on it
            message, code = error_message(exc.body)
            raise self._server_error(message or exc.message, code) from None
        except timeout_errors():
            raise self._stalled() from None
        except transport_errors():
            raise self._broken() from None
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
            self.reply.usage = {k: int(getattr(usage, k)) for k in ("prompt_tokens", "completion_tokens",
                                                                     "total_tokens") if getattr(usage, k, None) is not None}

    def _partial(self) -> str:
        """The cleaned text so far, including what the prefix stripper still holds back."""
        return "".join(self._shown) + self._stripper.pending

    def _partial_note(self) -> str:
        n = len(self._partial())
        return f"{n} characters arrived before that (kept in the error's .partial_text)" if n \
            else "no text had arrived yet"

    def _broken(self) -> StreamError:
        return StreamError(f"The answer from {self.base_url} broke off: the connection dropped; "
                           f"{self._partial_note()}. Ask again; if it keeps happening, the backend may be restarting.",
                           partial_text=self._partial(), reason="dropped")

    def _stalled(self) -> StreamError:
        return StreamError(f"The answer from {self.base_url} stalled: nothing arrived for {self.settings.timeout:g} s "
                           f"(LABKIT_TIMEOUT); {self._partial_note()}. Ask again, or raise LABKIT_TIMEOUT.",
                           partial_text=self._partial(), reason="stalled")

    def _server_error(self, message: str, code: Any) -> StreamError:
        said = " ".join(message.replace("**", "").split())  # one line, without Markdown emphasis
        return StreamError(f"The backend reported an error mid-answer (code {code}): {said}; "
                           f"{self._partial_note()}. Ask again in a moment.",
                           partial_text=self._partial(), reason="backend", body={"message": message, "code": code})


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
    **extra: Any,
) -> ChatStream:
    """Start a streaming answer; iterate the result for cleaned text deltas.

    ``prompt`` is a question (with an optional ``image``) or a list of messages. After the loop,
    ``stream.reply`` holds the text, finish reason, usage and timings. Failures raise
    :class:`labkit.StreamError` (with ``partial_text``) or another :class:`labkit.LabkitError`.
    Extra keyword arguments (``extra_headers=…``, ``seed=…``) go to the openai client.

    Example:
        >>> stream = stream_chat("What is in this image?", image="images/chelsea.jpg")  # doctest: +SKIP
        >>> for delta in stream:                                                      # doctest: +SKIP
        ...     print(delta, end="", flush=True)
    """
    __tracebackhide__ = True
    clash = sorted({"messages", "stream", "stream_options"} & set(extra))
    if clash:
        raise LabkitError(f"stream_chat sets {', '.join(clash)} itself: leave {'it' if len(clash) == 1 else 'them'} "
                          "out (pass the question or a message list as the first argument).")
    settings = settings or load_settings()
    if model:
        settings = replace(settings, model=model)
    options = {k: v for k, v in dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop).items()
               if v is not None}
    options.update(extra)
    return ChatStream(_as_messages(prompt, image), settings=settings, client=client, options=options, retries=retries)


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
        view.finish(reply.text, "⏹ stopped: the partial answer is kept in the returned reply's .text")
        return reply
    except StreamError as exc:
        view.finish(exc.partial_text, "⚠ the answer broke off (see the error below)")
        raise
    view.finish(stream.reply.text)
    return stream.reply
