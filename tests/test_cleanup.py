"""The role-prefix rule, by example and by property (hypothesis)."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from labkit import RolePrefixStripper, strip_role_prefix
from labkit.cleanup import MAX_PREFIX_LEN

# The test's own statement of what a leak looks like (independent of the implementation's regex).
LEAKS = st.builds(
    lambda space, im, word, end: space + im + word + end,
    st.text(alphabet=" \t\r\n", max_size=8),
    st.sampled_from(["", "<|im_start|>"]),
    st.sampled_from(["assistant", "Assistant", "ASSISTANT"]),
    st.sampled_from(["\n", ": ", ":\n"]),
)
LEAKY_START = re.compile(r"^[ \t\r\n]{0,8}(<\|im_start\|>)?assistant(\n|:)", re.IGNORECASE)
CLEAN = st.text().filter(lambda x: not LEAKY_START.match(x))


def test_examples() -> None:
    assert strip_role_prefix("assistant\nThe image shows a cat.") == "The image shows a cat."
    assert strip_role_prefix("<|im_start|>assistant\n图中是一只猫。") == "图中是一只猫。"
    assert strip_role_prefix("ASSISTANT: The cat") == "The cat"
    for clean in ["I am an AI assistant. The image shows a cat.", "Assistant managers earn more.",
                  "assistant professors teach", "The assistant:\nnothing", "", "assistant"]:
        assert strip_role_prefix(clean) == clean
    # what the course document's split destroys
    answer = "I am an AI assistant. The image shows a cat."
    assert answer.split("assistant", 1)[1] == ". The image shows a cat."


@given(CLEAN)
@example("An assistant helps.")
@example("assistant")
@example("  assistant is a noun")
def test_clean_answers_are_untouched(x: str) -> None:
    assert strip_role_prefix(x) == x


@given(LEAKS, st.text())
def test_leak_is_removed_exactly(leak: str, x: str) -> None:
    assert strip_role_prefix(leak + x) == x


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=300)
@given(st.one_of(LEAKS, st.just("")), st.text(), st.lists(st.integers(0, 60), max_size=12))
def test_any_chunking_gives_the_same_text(leak: str, x: str, cuts: list[int]) -> None:
    whole = leak + x
    stripper = RolePrefixStripper()
    pieces = [stripper.feed(part) for part in chunked(whole, cuts)] + [stripper.finish()]
    assert "".join(pieces) == strip_role_prefix(whole)


@given(st.text(min_size=1))
def test_stream_holds_back_at_most_the_prefix(x: str) -> None:
    stripper = RolePrefixStripper()
    shown = ""
    for i, ch in enumerate(x):
        shown += stripper.feed(ch)
        assert i + 1 - len(shown) <= MAX_PREFIX_LEN  # held back, or removed as a marker


NEAR_MISSES = st.builds(
    lambda space, head, cut, tail: space + (head)[:cut] + tail,
    st.text(alphabet=" \t\r\n", max_size=10),
    st.sampled_from(["assistant\n", "Assistant: ", "<|im_start|>assistant\n", "<|im_start|>user\n", "assistance",
                     "aſſistant\n", "ASSISTANT:\n"]),
    st.integers(0, 24),
    st.text(max_size=12),
)


@settings(max_examples=400)
@given(NEAR_MISSES, st.lists(st.integers(0, 40), max_size=10))
def test_near_misses_chunk_consistently(text: str, cuts: list[int]) -> None:
    stripper = RolePrefixStripper()
    pieces = [stripper.feed(part) for part in chunked(text, cuts)] + [stripper.finish()]
    assert "".join(pieces) == strip_role_prefix(text)


def test_only_ascii_spellings_count() -> None:
    assert strip_role_prefix("aſſistant\nHi") == "aſſistant\nHi"
