"""labkit.Playground driven as a person would (buttons, upload, sliders) against real practice servers
over HTTP: streaming, Stop, Clear, follow-ups, the budget bar, every failure shown in the widget, and
the saved JSONL decoded back."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image
from support import IMAGES, decode_data_url

import labkit
from labkit.modelview import anyres_plan, render_model_view
from labkit.practice import serve_in_thread

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def paced_url() -> Iterator[str]:
    """Paced like a real model (but quicker), so an answer is still streaming when Stop is pressed."""
    with serve_in_thread(fast=False, ttft=0.05, ttft_per_image=0.0, tokens_per_second=60) as url:
        yield url


def make(url: str, **kw) -> labkit.Playground:
    return labkit.Playground(samples=IMAGES, settings=labkit.Settings(base_url=url), **kw)


def sent_image(pg: labkit.Playground) -> Image.Image:
    """Decode the image the playground put into the conversation (what went over the wire)."""
    for message in pg.messages:
        if isinstance(message["content"], list):
            for part in message["content"]:
                if part["type"] == "image_url":
                    return decode_data_url(part["image_url"]["url"])
    raise AssertionError("no image was sent")


def test_upload_shows_thumbnail_model_view_and_costs(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    data = (IMAGES / "chelsea.jpg").read_bytes()
    pg.upload.value = ({"name": "chelsea.jpg", "type": "image/jpeg", "size": len(data),
                        "content": memoryview(data), "last_modified": NOW},)
    original = Image.open(io.BytesIO(data))
    thumb = Image.open(io.BytesIO(pg.thumbnail.value))
    assert max(thumb.size) <= 240 and abs(thumb.width / thumb.height - original.width / original.height) < 0.05
    info = labkit.describe_image(labkit.encode_image(data))
    text = pg.image_info.value
    assert f"{original.width}×{original.height}" in text and f"{info.width}×{info.height}" in text
    assert f"{info.image_tokens} " in text
    view = Image.open(io.BytesIO(pg.model_view.value))
    plan = anyres_plan(info.width, info.height)
    assert view.size == ((336 + 24 + plan.grid[0]) // 2, max(336, plan.grid[1]) // 2)
    assert f"{plan.grid[0]}×{plan.grid[1]}" in pg.view_caption.value
    # the budget bar already counts the chosen image
    assert pg.budget.value >= info.image_tokens


def test_model_view_draws_the_grid_padding_and_overview() -> None:
    red = Image.new("RGB", (1000, 200), (230, 10, 10))
    plan = anyres_plan(1000, 200)
    assert plan.grid == (1008, 336) and plan.tiles == 3
    view = render_model_view(red, scale=1)
    assert view.size == (336 + 24 + 1008, 336)
    px = view.getpixel
    assert px((168, 168))[0] > 200  # the overview: the whole image squashed to 336×336
    grid_x = 336 + 24
    assert px((grid_x + 500, 168))[0] > 200  # the image, centred in the grid
    assert max(px((grid_x + 500, 40))) < 60  # padding above it is dark
    assert px((grid_x + 336, 200))[:2] == (255, 214)  # a yellow tile border between tiles 1 and 2


def test_send_streams_the_answer_about_the_sent_image(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    pg.sample.value = str(IMAGES / "rocket.jpg")
    pg.question.value = "What colours are in this image?"
    pg.send_button.click()
    pg.wait()
    turn = pg.turns[-1]
    image = sent_image(pg)
    assert turn.outcome == "stop" and turn.error is None
    assert f"{image.width}×{image.height}" in turn.answer and "blue" in turn.answer
    assert not turn.answer.lower().startswith("assistant")  # the leaked role prefix is gone
    assert turn.answer in pg.transcript_text and "rocket.jpg" in pg.transcript_text
    assert "first token" in pg.status_text and "tokens/s" in pg.status_text
    assert pg.question.value == "" and not pg.send_button.disabled and pg.stop_button.disabled


def test_stop_keeps_what_arrived_and_the_follow_up_continues(paced_url: str) -> None:
    pg = make(paced_url)
    pg.choose_image(IMAGES / "coffee.jpg")
    pg.question.value = "Describe the image in about 2000 words"
    pg.send_button.click()
    assert pg.busy and pg.send_button.disabled and not pg.stop_button.disabled  # the click returned at once
    _until(lambda: len(pg.turns[-1].parts) >= 8 and "Model:** " in pg.transcript_text
           and pg.turns[-1].parts[0] in pg.transcript_text)  # text shows while it streams
    assert "streaming" in pg.status_text
    pg.stop_button.click()
    turn = pg.turns[-1]
    assert turn.outcome == "stopped" and not pg.busy
    assert 8 <= turn.tokens < 1500 and turn.answer.startswith("".join(turn.parts[:8]))
    assert "stopped" in pg.status_text and turn.answer in pg.transcript_text
    assert not pg.send_button.disabled and pg.stop_button.disabled
    kept = turn.answer
    time.sleep(0.3)
    assert pg.turns[-1].answer == kept  # nothing more arrives after Stop
    # the stopped answer is part of the history: the follow-up still sees the image, which is not re-sent
    pg.ask("And how bright is it?").wait()
    assert "brightness" in pg.turns[-1].answer and "no image" not in pg.turns[-1].answer
    assert pg.turns[-1].image is None
    assert [m["role"] for m in pg.messages] == ["user", "assistant", "user", "assistant"]
    assert pg.messages[1]["content"] == kept


def test_clear_starts_a_new_conversation_and_resends_the_image(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    pg.choose_image(IMAGES / "astronaut.jpg")
    pg.ask("What is this?").wait()
    pg.ask("And again?").wait()
    assert len(pg.turns) == 2 and pg.budget.value > 2000
    pg.clear_button.click()
    assert pg.turns == [] and pg.messages == [] and "conversation will appear here" in pg.transcript_text
    pg.ask("What is this?").wait()
    assert len(pg.messages) == 2 and pg.turns[-1].image is not None


def test_budget_bar_follows_the_conversation_and_old_images_go(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    assert pg.budget.value == 0 and pg.budget.max == 4096
    pg.choose_image(IMAGES / "chelsea.jpg")
    first = pg.budget.value
    assert first > 1000 and "4096" in pg.budget_label.value and pg.budget.bar_style == "success"
    pg.max_tokens.value = 2048
    assert pg.budget.bar_style in ("warning", "danger") and pg.budget.value == first
    pg.max_tokens.value = 256
    pg.ask("What colours?").wait()
    after = pg.budget.value
    assert after == labkit.estimate_tokens(pg.messages) > first
    # a second image: the first is removed from the history before sending, and the widget says so
    pg.choose_image(IMAGES / "camera.png")
    pg.ask("And this one?").wait()
    assert sum(isinstance(m["content"], list) and any(p["type"] == "image_url" for p in m["content"])
               for m in pg.messages) == 1
    assert "older part" in pg.status_text and pg.budget.value < 4096


def test_backend_down_is_explained_and_the_widget_stays_usable(fastchat_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    pg = make(dead)
    pg.ask("Is anyone there?").wait()
    assert pg.turns[-1].outcome == "error"
    status = pg.status_text
    assert "cannot be reached" in status and dead in status and "labkit practice" in status
    assert "Traceback" not in status and not pg.send_button.disabled
    assert pg.question.value == "Is anyone there?" and pg.messages == []  # ready to send again
    pg.settings = labkit.Settings(base_url=fastchat_url)
    pg.send_button.click()
    pg.wait()
    assert pg.turns[-1].outcome == "stop" and "Is anyone there" in pg.turns[-1].answer


def test_damaged_image_is_explained_and_the_previous_one_kept(fastchat_url: str, tmp_path: Path) -> None:
    pg = make(fastchat_url)
    assert pg.choose_image(IMAGES / "rocket.jpg")
    before = pg.model_view.value
    broken = (IMAGES / "coffee.jpg").read_bytes()[:3000]
    pg.upload.value = ({"name": "broken.jpg", "type": "image/jpeg", "size": len(broken),
                        "content": memoryview(broken), "last_modified": NOW},)
    status = pg.status_text
    assert "cannot be used" in status and "broken.jpg" in status and "damaged" in status
    assert pg.model_view.value == before
    assert not pg.choose_image(b"this is not an image at all")
    assert "not an image" in pg.status_text
    pg.ask("What colours?").wait()
    assert pg.turns[-1].image["name"] == "rocket.jpg" and pg.turns[-1].outcome == "stop"


def test_wrong_key_is_explained_without_showing_it() -> None:
    with serve_in_thread(fast=True, api_keys=("course-key-1234567890",)) as url:
        pg = labkit.Playground(samples=None, settings=labkit.Settings(base_url=url, api_key="wrong-key-0987654321"))
        assert "wrong-key-0987654321" not in pg.backend.value
        pg.ask("Hello").wait()
    status = pg.status_text
    assert "refused the API key" in status and "LABKIT_API_KEY" in status
    assert "wrong-key-0987654321" not in status and "…4321" in status
    assert "wrong-key-0987654321" not in json.dumps(pg.records())


def test_rate_limit_is_explained(fastchat_url: str) -> None:
    settings = labkit.Settings(base_url=fastchat_url)
    pg = labkit.Playground(samples=None, settings=settings, client=labkit.client(settings, max_retries=0),
                           request_options={"extra_headers": {"X-Practice-Fault": "status=429"}})
    pg.ask("Hello").wait()
    status = pg.status_text
    assert "busy or limiting" in status and "429" in status and "try again" in status.lower()
    assert not pg.send_button.disabled


def test_cut_stream_keeps_the_partial_answer(fastchat_url: str) -> None:
    pg = make(fastchat_url, request_options={"extra_headers": {"X-Practice-Fault": "drop-after=6"}})
    pg.choose_image(IMAGES / "chelsea.jpg")
    pg.ask("Describe the image").wait()
    turn = pg.turns[-1]
    assert turn.outcome == "error" and "broke off" in turn.error
    assert turn.answer and turn.answer in pg.transcript_text and "answer failed" in pg.transcript_text
    assert "broke off" in pg.status_text and "Ask again" in pg.status_text
    assert pg.messages[-1] == {"role": "assistant", "content": turn.answer}  # what arrived stays in the history


def test_backend_error_event_is_shown_as_it_came(fastchat_url: str) -> None:
    pg = make(fastchat_url, request_options={"extra_headers": {"X-Practice-Fault": "error-after=3"}})
    pg.ask("Describe the image").wait()
    assert "out of memory" in pg.status_text.lower() and pg.turns[-1].outcome == "error"


def test_empty_question_and_busy_send_only_say_what_to_do(paced_url: str) -> None:
    pg = make(paced_url)
    pg.send_button.click()
    assert "Type a question" in pg.status_text and pg.turns == []
    pg.ask("Tell me about 500 words of practice")
    pg.ask("A second question while busy")
    assert "still streaming" in pg.status_text and len(pg.turns) == 1
    pg.stop()
    assert pg.turns[-1].outcome == "stopped"


def test_shift_enter_message_sends_the_question(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    assert pg._shift_enter is not None  # anywidget is a dependency: the key helper is part of the widget
    pg._shift_enter._handle_custom_msg({"event": "submit", "value": "Hello from the keyboard"}, [])
    pg.wait()
    assert pg.turns[-1].question == "Hello from the keyboard" and pg.turns[-1].outcome == "stop"


def test_save_writes_jsonl_that_decodes_to_the_conversation(fastchat_url: str, tmp_path: Path) -> None:
    pg = make(fastchat_url)
    pg.choose_image(IMAGES / "camera.png")
    pg.temperature.value = 0.7
    pg.ask("What kind of image is this?").wait()
    pg.ask("请描述颜色").wait()
    pg.save_name.value = str(tmp_path / "report" / "lab.jsonl")
    pg.save_button.click()
    assert "Saved 2 turn(s)" in pg.status_text
    lines = (tmp_path / "report" / "lab.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["turn"] for r in records] == [1, 2]
    first, second = records
    assert first["question"] == "What kind of image is this?" and first["answer"] == pg.turns[0].answer
    assert first["temperature"] == 0.7 and first["max_tokens"] == 512 and first["outcome"] == "stop"
    assert first["model"] == "llava-v1.6-34b" and first["base_url"] == fastchat_url
    assert first["ttft"] is not None and first["tokens"] > 5
    assert first["image"]["sha256"] == hashlib.sha256((IMAGES / "camera.png").read_bytes()).hexdigest()
    assert first["image"]["sent_size"] == list(sent_image(pg).size)
    assert second["image"] is None and "请描述颜色" in lines[1]  # Chinese kept readable (UTF-8)
    assert "base64" not in "".join(lines)
    pg.save_button.click()  # its own file is brought up to date
    assert "Saved 2 turn(s)" in pg.status_text
    # never over a notebook, another file, or with nothing: a message, not a traceback, and nothing written
    notebook = tmp_path / "01-first-request.ipynb"
    notebook.write_text("{}")
    pg.save_name.value = str(notebook)
    pg.save_button.click()
    assert "does not end in .jsonl" in pg.status_text and notebook.read_text() == "{}"
    other = tmp_path / "someone-else.jsonl"
    other.write_text("kept\n")
    pg.save_name.value = str(other)
    pg.save_button.click()
    assert "already exists" in pg.status_text and other.read_text() == "kept\n"
    fresh = make(fastchat_url)
    fresh.save_name.value = str(tmp_path / "empty.jsonl")
    fresh.save_button.click()
    assert "nothing to save" in fresh.status_text and not (tmp_path / "empty.jsonl").exists()
    fresh.ask("Again?").wait()  # a later playground (a re-run notebook) may replace an earlier one's save
    fresh.save_name.value = str(tmp_path / "report" / "lab.jsonl")
    fresh.save_button.click()
    assert "Saved 1 turn(s)" in fresh.status_text


def test_saved_image_is_what_was_sent(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    big = Image.new("RGB", (4032, 3024), (20, 160, 40))
    buf = io.BytesIO()
    big.save(buf, format="JPEG")
    pg.choose_image(buf.getvalue(), name="phone.jpg")
    pg.ask("What colours?").wait()
    image = sent_image(pg)
    assert max(image.size) <= 1008 and image.size == tuple(pg.records()[0]["image"]["sent_size"])
    assert "green" in pg.turns[-1].answer


def test_embedded_practice_server_and_configured_backend(monkeypatch: pytest.MonkeyPatch, fastchat_url: str) -> None:
    pg = labkit.Playground(samples=None)  # nothing configured: the embedded practice server answers
    assert "embedded practice server" in pg.backend.value
    pg.ask("Hello").wait()
    assert pg.turns[-1].outcome == "stop" and pg.turns[-1].base_url.startswith("http://127.0.0.1:")
    assert pg.turns[-1].base_url in pg.backend.value
    monkeypatch.setenv("LABKIT_BASE_URL", fastchat_url)  # read at each question
    pg.ask("Hello again").wait()
    assert pg.turns[-1].base_url == fastchat_url and "Hello again" in pg.turns[-1].answer
    assert [m["role"] for m in pg.messages] == ["user", "assistant", "user", "assistant"]  # the history went along
    monkeypatch.setenv("LABKIT_BASE_URL", "not-a-url")
    pg.ask("And now?").wait()
    assert "not an http(s) URL" in pg.status_text and not pg.busy and not pg.send_button.disabled
    assert len(pg.turns) == 2 and pg.question.value == "And now?"


def test_stop_answers_at_once_when_the_backend_goes_quiet(fastchat_url: str) -> None:
    pg = make(fastchat_url, request_options={"extra_headers": {"X-Practice-Fault": "stall-after=4,stall-seconds=20"}})
    pg.ask("Describe the image")
    _until(lambda: len(pg.turns[-1].parts) >= 3)
    time.sleep(0.2)  # the server has gone quiet: no chunk will wake the worker
    pg.stop_button.click()
    turn = pg.turns[-1]
    assert turn.outcome == "stopped" and turn.answer and not pg.busy and not pg.send_button.disabled
    pg.request_options = {}
    pg.ask("And now?").wait(10)  # the playground is usable while the old request still hangs
    assert pg.turns[-1].outcome == "stop" and "And now?" in pg.turns[-1].answer
    assert [m["role"] for m in pg.messages] == ["user", "assistant", "user", "assistant"]


def test_upload_is_forgotten_after_use_and_can_be_repeated(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    pg.sample.value = str(IMAGES / "rocket.jpg")
    data = (IMAGES / "camera.png").read_bytes()
    for _ in range(2):
        pg.upload.value = ({"name": "camera.png", "type": "image/png", "size": len(data),
                            "content": memoryview(data), "last_modified": NOW},)
        assert pg.upload.value == () and pg.sample.value == "" and "camera.png" in pg.image_info.value
