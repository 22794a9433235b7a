"""labkit.Playground driven as a person would (buttons, upload, sliders) against real practice servers
over HTTP: streaming, Stop, Clear, follow-ups, the budget bar, every failure shown in the widget, and
the saved JSONL decoded back."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image
from support import IMAGES, decode_data_url

import labkit
from labkit.playground.modelview import anyres_plan, render_model_view
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


def test_transcript_shows_html_and_images_as_text_never_loads_them(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    pg.question.value = 'Is <img src="notes.png"> or ![x](/etc/passwd) shown?'
    pg.send_button.click()
    pg.wait()
    shown = pg.transcript_text
    assert '\\<img src="notes.png">' in shown and "\\![x](/etc/passwd)" in shown
    assert '<img src="notes.png">' not in shown.replace('\\<img', "")


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
    assert "question is empty" in pg.status_text and pg.turns == []
    with pytest.raises(labkit.UsageError, match="question is empty"):
        pg.ask("   ")
    pg.ask("Tell me about 500 words of practice")
    # Shift+Enter while it streams: a message, and the question stays in the box to send later
    pg._shift_enter._handle_custom_msg({"event": "submit", "value": "A second question while busy"}, [])
    assert "still streaming" in pg.status_text and len(pg.turns) == 1
    assert pg.question.value == "A second question while busy"
    pg.stop()
    assert pg.turns[-1].outcome == "stopped"


def test_ask_while_an_answer_streams_raises_and_never_answers_with_the_previous_turn(paced_url: str) -> None:
    pg = make(paced_url)
    pg.ask("Describe the image in about 300 words")
    first = pg.turns[-1]
    with pytest.raises(labkit.UsageError) as raised:
        pg.ask("What colours are in this image?").wait()  # the trap: .wait() handed back the first answer
    message = str(raised.value)
    assert "still streaming" in message and "What colours are in this image?" in message and "not sent" in message
    assert "still streaming" in pg.status_text
    assert pg.turns == [first] and first.outcome == "streaming"  # nothing dropped, nothing half-started
    pg.wait()
    assert first.outcome in ("stop", "length") and not pg.busy
    pg.ask("What colours are in this image?").wait()  # once it has ended, the question goes through
    assert len(pg.turns) == 2 and pg.turns[-1].question == "What colours are in this image?"
    assert pg.turns[-1].outcome in ("stop", "length") and pg.turns[-1].answer != first.answer
    # a wait that runs out says so rather than hand back an unfinished answer
    pg.ask("Describe the image in about 2000 words")
    with pytest.raises(labkit.UsageError, match="still streaming after 0.01 s"):
        pg.wait(0.01)
    pg.stop()


def test_shift_enter_message_sends_the_question(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    assert pg._shift_enter is not None  # anywidget is a dependency: the key helper is part of the widget
    pg._shift_enter._handle_custom_msg({"event": "submit", "value": "Hello from the keyboard"}, [])
    pg.wait()
    assert pg.turns[-1].question == "Hello from the keyboard" and pg.turns[-1].outcome == "stop"


def test_save_writes_jsonl_that_decodes_to_the_conversation(fastchat_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the notebook's folder: the Save button saves inside it
    pg = make(fastchat_url)
    pg.choose_image(IMAGES / "camera.png")
    pg.temperature.value = 0.7
    pg.ask("What kind of image is this?").wait()
    pg.ask("请描述颜色").wait()
    pg.save_name.value = "report/lab.jsonl"
    pg.save_button.click()
    assert "Saved 2 turn(s) to report/lab.jsonl" in pg.status_text
    lines = (tmp_path / "report" / "lab.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["turn"] for r in records] == [1, 2]
    first, second = records
    assert first["question"] == "What kind of image is this?" and first["answer"] == pg.turns[0].answer
    assert first["temperature"] == 0.7 and first["max_tokens"] == 512 and first["outcome"] == "stop"
    assert first["model"] == "llava-v1.6-34b" and first["base_url"] == fastchat_url
    assert first["ttft"] is not None and first["tokens"] > 5
    assert first["conversation"] == second["conversation"] == pg.session.conversation_id
    assert first["image"]["sha256"] == hashlib.sha256((IMAGES / "camera.png").read_bytes()).hexdigest()
    assert first["image"]["sent_size"] == list(sent_image(pg).size)
    assert second["image"] is None and "请描述颜色" in lines[1]  # Chinese kept readable (UTF-8)
    assert "base64" not in "".join(lines)
    pg.ask("And the shapes?").wait()
    pg.save_button.click()  # its own file is brought up to date
    assert "Saved 3 turn(s) to report/lab.jsonl" in pg.status_text
    assert len((tmp_path / "report" / "lab.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    # never over a notebook, another file, or with nothing: a message, not a traceback, and nothing lost
    notebook = tmp_path / "01-first-request.ipynb"
    notebook.write_text("{}")
    pg.save_name.value = notebook.name
    pg.save_button.click()
    assert "does not end in .jsonl" in pg.status_text and notebook.read_text() == "{}"
    other = tmp_path / "someone-else.jsonl"
    other.write_text("kept\n")
    pg.save_name.value = other.name
    pg.save_button.click()
    assert "someone-else.jsonl already holds something else" in pg.status_text and other.read_text() == "kept\n"
    assert "Saved 3 turn(s) to someone-else-2.jsonl" in pg.status_text and pg.save_name.value == "someone-else-2.jsonl"
    fresh = make(fastchat_url)
    fresh.save_name.value = "empty.jsonl"
    fresh.save_button.click()
    assert "nothing to save" in fresh.status_text and not (tmp_path / "empty.jsonl").exists()
    with pytest.raises(labkit.UsageError, match="nothing to save"):
        fresh.save("empty.jsonl")
    fresh.ask("Again?").wait()  # a later playground (a re-run notebook) keeps the earlier one's save
    fresh.save_name.value = "report/lab.jsonl"
    fresh.save_button.click()
    assert "Saved 1 turn(s) to report/lab-2.jsonl" in fresh.status_text
    assert len((tmp_path / "report" / "lab.jsonl").read_text(encoding="utf-8").splitlines()) == 3


def _conversation_in(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_save_after_clear_never_replaces_the_earlier_conversation(fastchat_url: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pg = make(fastchat_url)
    pg.ask("First conversation?").wait()
    pg.save_button.click()
    assert "Saved 1 turn(s) to playground.jsonl" in pg.status_text
    pg.clear_button.click()
    pg.ask("Second conversation?").wait()
    pg.save_button.click()  # the trap: this replaced the first conversation's file
    status = pg.status_text
    assert "playground.jsonl already holds something else" in status and "new file" in status
    assert "Saved 1 turn(s) to playground-2.jsonl" in status and pg.save_name.value == "playground-2.jsonl"
    assert _conversation_in(tmp_path / "playground.jsonl") == ["First conversation?"]
    assert _conversation_in(tmp_path / "playground-2.jsonl") == ["Second conversation?"]
    pg.ask("Still the second?").wait()
    pg.save_button.click()  # the new file is this conversation's: brought up to date, no third file
    assert "Saved 2 turn(s) to playground-2.jsonl" in pg.status_text and not (tmp_path / "playground-3.jsonl").exists()
    assert _conversation_in(tmp_path / "playground-2.jsonl") == ["Second conversation?", "Still the second?"]
    # in code: the earlier conversation's file is kept and the error says how to replace it
    with pytest.raises(labkit.UsageError, match="already holds something else.*replace=True"):
        pg.save("playground.jsonl")
    assert _conversation_in(tmp_path / "playground.jsonl") == ["First conversation?"]
    assert pg.save("playground.jsonl", replace=True) == Path("playground.jsonl")
    assert _conversation_in(tmp_path / "playground.jsonl") == ["Second conversation?", "Still the second?"]
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file of the replacement is gone


def test_save_button_saves_only_inside_the_working_folder(fastchat_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "link").symlink_to(outside)
    monkeypatch.chdir(work)
    pg = make(fastchat_url)
    pg.ask("Where does this go?").wait()
    for name in ("../escape.jsonl", str(outside / "abs.jsonl"), "link/through.jsonl", "link/new/deep.jsonl"):
        pg.save_name.value = name
        pg.save_button.click()
        assert "outside the working folder" in pg.status_text and "pg.save(path)" in pg.status_text, name
    assert list(outside.rglob("*")) == [] and not (tmp_path / "escape.jsonl").exists()
    pg.save_name.value = str(work / "outputs" / "inside.jsonl")  # an absolute path inside is fine; folders made
    pg.save_button.click()
    assert "Saved 1 turn(s) to outputs/inside.jsonl" in pg.status_text
    assert _conversation_in(work / "outputs" / "inside.jsonl") == ["Where does this go?"]
    # a path given in code may be anywhere
    assert pg.save(outside / "code.jsonl") == outside / "code.jsonl"
    assert _conversation_in(outside / "code.jsonl") == ["Where does this go?"]


def _click_within(button, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Click in a thread: a FIFO opened for writing would block the kernel; the test must not hang with it."""
    done = threading.Thread(target=button.click, daemon=True)
    done.start()
    done.join(seconds)
    assert not done.is_alive(), "the Save button blocked"


def test_save_writes_only_regular_files(fastchat_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pg = make(fastchat_url)
    pg.ask("Anything?").wait()
    pg.save_button.click()
    ours = tmp_path / "playground.jsonl"
    kept = ours.read_text(encoding="utf-8")
    # a symbolic link, even to this conversation's own file, is never followed
    (tmp_path / "link.jsonl").symlink_to(ours)
    pg.save_name.value = "link.jsonl"
    pg.save_button.click()
    assert "link.jsonl is a symbolic link" in pg.status_text and (tmp_path / "link.jsonl").is_symlink()
    with pytest.raises(labkit.OutputError, match="symbolic link"):
        pg.save("link.jsonl", replace=True)
    assert ours.read_text(encoding="utf-8") == kept
    # a FIFO named *.jsonl: a message at once, never a hung kernel
    os.mkfifo(tmp_path / "pipe.jsonl")
    pg.save_name.value = "pipe.jsonl"
    _click_within(pg.save_button)
    assert "pipe.jsonl is not a regular file but a named pipe (FIFO)" in pg.status_text
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.jsonl").st_mode)
    # a folder named *.jsonl
    (tmp_path / "folder.jsonl").mkdir()
    pg.save_name.value = "folder.jsonl"
    pg.save_button.click()
    assert "folder.jsonl is not a regular file but a folder" in pg.status_text
    # an empty .jsonl it did not write is never replaced: the button picks a new name, code refuses
    (tmp_path / "empty.jsonl").touch()
    pg.save_name.value = "empty.jsonl"
    pg.save_button.click()
    assert "Saved 1 turn(s) to empty-2.jsonl" in pg.status_text and (tmp_path / "empty.jsonl").read_bytes() == b""
    with pytest.raises(labkit.UsageError, match="empty file"):
        pg.save(tmp_path / "empty.jsonl")
    assert (tmp_path / "empty.jsonl").read_bytes() == b""
    # a NUL or another control character in the name: a message, not an exception out of the handler
    for name in ("bad\x00name.jsonl", "two\nlines.jsonl"):
        pg.save_name.value = name
        pg.save_button.click()
        assert "control character" in pg.status_text and "labkit-error" in pg.status.value
    with pytest.raises(labkit.UsageError, match="control character"):
        pg.save("bad\x00name.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-2.jsonl", "empty.jsonl", "folder.jsonl",
                                                            "link.jsonl", "pipe.jsonl", "playground.jsonl"]
    # a device named *.jsonl (where this user may make one: /dev/null's numbers)
    try:
        os.mknod(tmp_path / "device.jsonl", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError, OSError):
        return
    pg.save_name.value = "device.jsonl"
    _click_within(pg.save_button)
    assert "device.jsonl is not a regular file but a device" in pg.status_text
    with pytest.raises(labkit.OutputError, match="a device"):
        pg.save("device.jsonl", replace=True)


def test_any_failure_while_saving_is_a_message_in_the_widget(fastchat_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pg = make(fastchat_url)
    pg.ask("Anything?").wait()

    def broken(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(pg.session, "save", broken)
    pg.save_button.click()  # no exception out of the handler
    assert "Could not save to playground.jsonl" in pg.status_text and "something nobody foresaw" in pg.status_text
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into a read-only folder")
def test_save_into_a_read_only_folder_is_a_message(fastchat_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        pg = make(fastchat_url)
        pg.ask("Anything?").wait()
        pg.save_name.value = "locked/report.jsonl"
        pg.save_button.click()
        assert "Could not save to" in pg.status_text and "choose another" in pg.status_text
    finally:
        locked.chmod(0o700)


def test_save_failures_speak_chinese(fastchat_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABKIT_LANG", "zh")
    pg = make(fastchat_url)
    pg.ask("Anything?").wait()
    os.mkfifo(tmp_path / "pipe.jsonl")
    shown = {}
    for name in ("pipe.jsonl", "../out.jsonl", "bad\x00.jsonl", "notes.txt"):
        pg.save_name.value = name
        _click_within(pg.save_button)
        shown[name] = pg.status_text
    (tmp_path / "first.jsonl").touch()
    pg.save_name.value = "first.jsonl"
    pg.save_button.click()
    shown["first.jsonl"] = pg.status_text
    for name, text in shown.items():
        assert re.search(r"[\u4e00-\u9fff]", text), (name, text)
        assert not re.search(r"\b(the|is|not|file|saved?|to)\b", text.replace("pg.save(path)", "")), (name, text)


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
    with pytest.raises(labkit.ConfigError, match="not an http"):
        pg.ask("And now?").wait()  # raised: never the previous turn as this question's answer
    assert "not an http(s) URL" in pg.status_text and not pg.busy and not pg.send_button.disabled
    assert len(pg.turns) == 2
    pg.question.value = "And now?"
    pg.send_button.click()  # the button: the same message in the widget, no traceback
    assert "not an http(s) URL" in pg.status_text and len(pg.turns) == 2 and pg.question.value == "And now?"


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


def test_upload_count_says_whether_the_uploaded_file_is_in_use(fastchat_url: str) -> None:
    pg = make(fastchat_url)
    data = (IMAGES / "camera.png").read_bytes()
    upload = ({"name": "camera.png", "type": "image/png", "size": len(data), "content": memoryview(data),
               "last_modified": NOW},)
    pg.sample.value = str(IMAGES / "rocket.jpg")
    pg.upload.value = upload
    # the button reads "Upload image (N)" with N = len(value): (1) while the uploaded photo is the one in use
    assert len(pg.upload.value) == 1 and pg.sample.value == "" and "camera.png" in pg.image_info.value
    pg.ask("What is this?").wait()
    assert len(pg.upload.value) == 1 and pg.turns[-1].image["name"] == "camera.png"
    pg.sample.value = str(IMAGES / "rocket.jpg")  # another image: the upload is no longer in use
    assert pg.upload.value == () and "rocket.jpg" in pg.image_info.value
    pg.upload.value = upload  # the same file again is taken again
    assert len(pg.upload.value) == 1 and "camera.png" in pg.image_info.value
    pg.choose_image(IMAGES / "coffee.jpg")  # in code, likewise
    assert pg.upload.value == () and "coffee.jpg" in pg.image_info.value
    broken = data[:200]
    pg.upload.value = ({"name": "broken.png", "type": "image/png", "size": len(broken),
                        "content": memoryview(broken), "last_modified": NOW},)
    assert pg.upload.value == () and "coffee.jpg" in pg.image_info.value and "broken.png" in pg.status_text


def test_the_session_works_alone_without_ipywidgets(paced_url: str, tmp_path: Path) -> None:
    """The session imports no ipywidgets: a script with ipywidgets blocked drives a whole conversation."""
    script = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("ipywidgets", "anywidget", "IPython"):
                    raise ImportError(f"{{name}} is blocked in this test")

        sys.meta_path.insert(0, Block())
        from labkit.config import Settings
        from labkit.errors import UsageError
        from labkit.playground.session import Session

        events = []
        s = Session(settings=Settings(base_url={paced_url!r}), listener=lambda e, t: events.append(e))
        picked = s.choose_image({str(IMAGES / "rocket.jpg")!r})
        turn = s.ask("What colours are in this image?")
        try:
            s.ask("A second question while it streams")
        except UsageError as exc:
            print("REFUSED:", exc)
        assert s.wait(30) is turn and turn.outcome == "stop", turn
        print("ANSWER:", turn.answer)
        print("SENT:", "%dx%d" % picked.sent, "IMAGE:", turn.image["name"])
        s.ask("And how bright is it?")
        s.wait(30)
        print("ROLES:", [m["role"] for m in s.messages], "EVENTS:", events.count("finished"))
        print("SAVED:", s.save({str(tmp_path / "alone.jsonl")!r}))
        s.clear()
        print("CLEARED:", s.turns, s.messages)
        print("LOADED:", sorted(m for m in sys.modules if m.split(".")[0] in ("ipywidgets", "anywidget")))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "OPENAI_"))}
    env["LABKIT_LANG"] = "en"  # the assertions read the English messages (Chinese is the default now)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "REFUSED:" in text and "still streaming" in text and "not sent" in text
    sent = re.search(r"SENT: (\d+)x(\d+) IMAGE: rocket.jpg", text)
    assert sent and f"{sent[1]}×{sent[2]}" in text.split("ANSWER:", 1)[1].split("\n", 1)[0]
    assert "ROLES: ['user', 'assistant', 'user', 'assistant'] EVENTS: 2" in text
    assert "CLEARED: [] []" in text and "LOADED: []" in text
    assert _conversation_in(tmp_path / "alone.jsonl") == ["What colours are in this image?", "And how bright is it?"]
