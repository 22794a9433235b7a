"""Messages and multi-turn conversations."""

from __future__ import annotations

import pytest
from support import IMAGES, decode_data_url

import labkit


def test_user_message_shapes() -> None:
    assert labkit.user("Hi") == {"role": "user", "content": "Hi"}
    msg = labkit.user("What is this?", IMAGES / "chelsea.jpg")
    assert msg["content"][0] == {"type": "text", "text": "What is this?"}
    assert decode_data_url(msg["content"][1]["image_url"]["url"]).size == (451, 300)
    with pytest.raises(labkit.LabkitError, match="must be text"):
        labkit.user(IMAGES / "chelsea.jpg")  # type: ignore[arg-type]


def test_conversation_keeps_history_and_turns(configured_fastchat: str) -> None:
    conv = labkit.Conversation(system="Answer briefly.")
    first = conv.ask("What colour is this?", image=IMAGES / "rocket.jpg", display=False)
    assert "blue" in first.text and first.text.count(".") == 1, "'Answer briefly.' gets one sentence"
    second = conv.ask("And how bright is it?", display=False)
    assert "turn" not in second.text, "no invented turn sentence"
    assert [m["role"] for m in conv.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert conv.messages[2]["content"] == first.text, "the cleaned answer goes into the history"
    assert "blue" in second.text, "the image from turn 1 is still in the history"


def test_older_images_are_dropped_to_fit(configured_fastchat: str, capsys: pytest.CaptureFixture[str]) -> None:
    conv = labkit.Conversation()
    conv.ask("What colour is this?", IMAGES / "rocket.jpg", display=False)
    reply = conv.ask("And this one?", IMAGES / "coffee.jpg", display=False)
    assert "orange" in reply.text  # the backend took the request: only one image was sent
    assert "removed an older image" in capsys.readouterr().out
    assert sum(1 for m in conv.messages for p in (m["content"] if isinstance(m["content"], list) else [])
               if p.get("type") == "image_url") == 1


def test_long_history_is_trimmed_under_the_context(configured_fastchat: str) -> None:
    conv = labkit.Conversation(system="Be helpful.")
    for i in range(12):
        conv.add_user(f"Question {i}: " + "lorem ipsum dolor sit amet " * 60)
        conv.add_assistant("An answer. " * 40)
    assert conv.tokens() > 4096
    conv.ask("Last question?", IMAGES / "astronaut.jpg", display=False, max_tokens=100)
    assert conv.messages[0]["role"] == "system"
    assert conv.tokens() <= 4096


def test_a_failed_question_leaves_the_history_as_it_was(configured_fastchat: str) -> None:
    conv = labkit.Conversation(system="Be brief.")
    conv.ask("Hello", display=False)
    before = list(conv.messages)
    with pytest.raises(labkit.StreamError):
        conv.ask("Describe", display=False, extra_headers={"x-practice-fault": "drop-after=3"})
    assert conv.messages == before
    assert conv.ask("Describe", display=False).text


def test_trimming_keeps_whole_turns(configured_fastchat: str) -> None:
    conv = labkit.Conversation(system="Be helpful.")
    for i in range(12):
        conv.add_user(f"Question {i}: " + "lorem ipsum " * 120)
        conv.add_assistant("An answer. " * 60)
    conv.ask("Last question?", display=False, max_tokens=100)
    roles = [m["role"] for m in conv.messages]
    assert roles[0] == "system" and roles[1] == "user"
    assert all(a != b for a, b in zip(roles[1:], roles[2:], strict=False)), "user and assistant alternate"
