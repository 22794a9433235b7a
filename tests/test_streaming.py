"""labkit.chat / stream_chat against real practice servers over HTTP, both dialects."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from PIL import Image
from support import IMAGES

import labkit
from labkit.practice import FaultConfig, PracticeConfig, serve_in_thread


def test_chat_cleans_the_prefix_and_reports_timings(configured_any: str) -> None:
    reply = labkit.chat("What colour is this?", image=IMAGES / "rocket.jpg", display=False)
    assert reply.raw.startswith("assistant\n") and not reply.text.startswith("assistant")
    assert reply.text == reply.raw[len("assistant\n"):]
    assert "blue" in reply.text and "640×427" in reply.text
    assert reply.finish_reason == "stop"
    assert reply.ttft is not None and 0 < reply.ttft <= reply.total_time
    assert reply.completion_tokens == reply.chunks


def test_usage_is_read_when_the_backend_sends_it(configured_vllm: str, fastchat_url: str) -> None:
    reply = labkit.chat("Hi", display=False, max_tokens=5)
    assert reply.usage == {"prompt_tokens": reply.usage["prompt_tokens"], "completion_tokens": 5,
                           "total_tokens": reply.usage["prompt_tokens"] + 5}
    assert reply.finish_reason == "length"
    labkit.configure(base_url=fastchat_url)
    assert labkit.chat("Hi", display=False, max_tokens=5).usage is None  # FastChat sends none


def test_the_image_sent_is_downscaled(configured_fastchat: str, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (4032, 3024), (30, 30, 200)).save(big)
    reply = labkit.chat("What size is this image?", image=big, display=False, temperature=0)
    assert "673×505 pixels" in reply.text, "the server saw the image at the size the model uses"


def test_an_answer_containing_assistant_survives(configured_fastchat: str) -> None:
    reply = labkit.chat("Are you an assistant?", display=False)
    assert "assistant" in reply.text  # the question is quoted back; the document's split would cut it
    assert reply.raw.split("assistant", 1)[1] != reply.text


def test_stream_chat_yields_deltas(configured_fastchat: str) -> None:
    stream = labkit.stream_chat("Hello", max_tokens=6)
    deltas = list(stream)
    assert len(deltas) >= 5 and "".join(deltas) == stream.reply.text
    assert stream.reply.finish_reason == "length"


def test_terminal_display_prints_as_it_goes(configured_fastchat: str, capsys: pytest.CaptureFixture[str]) -> None:
    reply = labkit.chat("Hello", max_tokens=8)
    assert capsys.readouterr().out == reply.text + "\n"


@pytest.mark.parametrize("fault,needle", [
    ("drop-after=3", "the connection dropped"),
    ("error-after=3", "error mid-answer"),
])
def test_failures_keep_the_partial_text(configured_any: str, fault: str, needle: str) -> None:
    with pytest.raises(labkit.StreamError) as info:
        labkit.chat("Describe", image=IMAGES / "coffee.jpg", display=False, extra_headers={"x-practice-fault": fault})
    assert needle in str(info.value)
    assert info.value.partial_text and len(info.value.partial_text.split()) <= 3
    assert not info.value.partial_text.startswith("assistant")


def test_stall_becomes_a_stream_error(fastchat_url: str) -> None:
    labkit.configure(base_url=fastchat_url, timeout=0.5)
    with pytest.raises(labkit.StreamError, match="stalled: nothing arrived for 0.5 s") as info:
        labkit.chat("Describe", display=False, extra_headers={"x-practice-fault": "stall-after=2,stall-seconds=3"})
    assert info.value.partial_text


def test_retry_only_before_the_first_token() -> None:
    with serve_in_thread(fast=True, faults=FaultConfig(drop_after=0, times=1)) as base:
        labkit.configure(base_url=base)
        reply = labkit.chat("Hello", display=False)
        assert reply.attempts == 2 and reply.text
    with serve_in_thread(fast=True, faults=FaultConfig(drop_after=2, times=1)) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.StreamError):
            labkit.chat("Hello", display=False)  # text had arrived: no silent retry


def test_busy_backend_is_retried_then_explained() -> None:
    with serve_in_thread(fast=True, faults=FaultConfig(fail_status=503, times=1)) as base:
        labkit.configure(base_url=base)
        assert labkit.chat("Hello", display=False).text
    with serve_in_thread(fast=True, faults=FaultConfig(fail_status=429)) as base:
        labkit.configure(base_url=base)
        with pytest.raises(labkit.RateLimited, match="HTTP 429"):
            labkit.chat("Hello", display=False, client=labkit.client(max_retries=0))


def test_interrupt_keeps_the_partial_reply() -> None:
    """The stop button while tokens stream in. The SIGINT is sent once a few tokens have arrived (not
    after a fixed delay: on a busy machine the first token may come later than any delay), while the
    main thread waits for the next one on the socket, as it does when a student presses stop."""
    arrived = threading.Event()

    class View(RecordingView):
        def update(self, delta: str) -> None:
            super().update(delta)
            if len(self.updates) == 5:
                arrived.set()

    def press_stop() -> None:
        if arrived.wait(30):
            os.kill(os.getpid(), signal.SIGINT)

    with serve_in_thread(PracticeConfig(ttft=0.05, ttft_per_image=0.0, tokens_per_second=40)) as base:
        labkit.configure(base_url=base)
        view = View()
        presser = threading.Thread(target=press_stop, daemon=True)
        presser.start()
        reply = labkit.chat("Describe it in about 300 words", image=IMAGES / "chelsea.jpg", display=view)
        presser.join()
    assert arrived.is_set()
    assert reply.interrupted and reply.finish_reason == "interrupted"
    assert 0 < len(reply.text.split()) < 100  # stopped early: the answer has about 300 words
    assert reply.text == "".join(view.updates) and view.finished is not None
    assert view.finished[0] == reply.text and "stopped" in view.finished[1]


@pytest.mark.parametrize("setup,error,needle", [
    (dict(model="gpt-4o"), labkit.ModelNotFound, "LABKIT_MODEL"),
    (dict(max_tokens=0), labkit.RequestRejected, "max_tokens ≥ 1"),
])
def test_request_errors_say_what_to_fix(configured_any: str, setup: dict, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        labkit.chat("Hi", display=False, **setup)


def test_unreachable_backend() -> None:
    labkit.configure(base_url="http://127.0.0.1:9/v1")
    with pytest.raises(labkit.BackendUnreachable, match=r"Nothing is listening at http://127.0.0.1:9/v1.*LABKIT_BASE_URL"):
        labkit.chat("Hi", display=False, client=labkit.client(max_retries=0))


def test_wrong_path_is_explained(fastchat_url: str) -> None:
    labkit.configure(base_url=fastchat_url.replace("/v1", "/nope"))
    with pytest.raises(labkit.BackendUnreachable, match="has no /chat/completions endpoint"):
        labkit.chat("Hi", display=False)


@pytest.mark.parametrize("dialect", ["fastchat", "vllm"])
def test_missing_or_wrong_key_names_the_variable(dialect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread(fast=True, dialect=dialect, api_keys=("the-course-key",)) as base:
        monkeypatch.setenv("LABKIT_BASE_URL", base)
        with pytest.raises(labkit.AuthError, match="Set LABKIT_API_KEY") as info:
            labkit.chat("Hi", display=False)
        assert info.value.status == 401
        monkeypatch.setenv("LABKIT_API_KEY", "a-wrong-key-123")
        with pytest.raises(labkit.AuthError) as info:
            labkit.chat("Hi", display=False)
        assert "a-wrong-key-123" not in str(info.value)
        monkeypatch.setenv("LABKIT_API_KEY", "the-course-key")
        assert labkit.chat("Hi", display=False).text


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(labkit.LabkitError, match="put the image in a message"):
        labkit.chat([labkit.user("Hi")], image=IMAGES / "rocket.jpg", display=False)
    with pytest.raises(labkit.LabkitError, match="takes a question"):
        labkit.chat(42, display=False)  # type: ignore[arg-type]


class RecordingView:
    def __init__(self) -> None:
        self.updates: list[str] = []
        self.finished: tuple[str, str] | None = None

    def update(self, delta: str) -> None:
        self.updates.append(delta)

    def finish(self, text: str, note: str = "") -> None:
        self.finished = (text, note)


def test_a_broken_answer_ends_the_live_view_with_a_note(configured_fastchat: str) -> None:
    view = RecordingView()
    with pytest.raises(labkit.StreamError) as info:
        labkit.chat("Describe", image=IMAGES / "rocket.jpg", display=view,
                    extra_headers={"x-practice-fault": "drop-after=6"})
    assert view.finished == (info.value.partial_text, "⚠ the answer broke off (see the error below)")
    assert f"{len(info.value.partial_text)} characters arrived" in str(info.value)
    assert info.value.reason == "dropped"


def test_a_stall_is_not_retried(fastchat_url: str) -> None:
    import time

    labkit.configure(base_url=fastchat_url, timeout=0.5)
    started = time.perf_counter()
    with pytest.raises(labkit.StreamError) as info:
        labkit.chat("Hi", display=False, extra_headers={"x-practice-fault": "stall-after=0,stall-seconds=3"})
    assert info.value.reason == "stalled" and info.value.partial_text == ""
    assert time.perf_counter() - started < 1.5


def test_backend_error_message_is_one_clean_line(configured_fastchat: str) -> None:
    with pytest.raises(labkit.StreamError) as info:
        labkit.chat("Hi", display=False, extra_headers={"x-practice-fault": "error-after=2"})
    assert "\n" not in str(info.value) and "**" not in str(info.value)
    assert "NETWORK ERROR DUE TO HIGH TRAFFIC" in str(info.value) and info.value.reason == "backend"


def test_reply_repr_is_short(configured_fastchat: str) -> None:
    reply = labkit.chat("Hello", display=False, max_tokens=4)
    assert repr(reply).startswith("<Reply length: ") and len(repr(reply)) < 120


def test_arguments_labkit_sets_itself_are_refused() -> None:
    with pytest.raises(labkit.LabkitError, match="sets stream itself"):
        labkit.stream_chat("Hi", stream=False)


def test_closing_a_stream_early_completes_the_reply(configured_fastchat: str) -> None:
    stream = labkit.stream_chat("Describe the image in about 300 words", image=IMAGES / "coffee.jpg")
    received = ""
    for delta in stream:
        received += delta
        if len(received.split()) >= 10:
            stream.close()
            break
    assert stream.reply.text == received and stream.reply.total_time > 0
    assert stream.reply.finish_reason is None  # it never finished: the student stopped it
