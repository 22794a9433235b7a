"""Removing the role prefix the course backend leaks at the start of an answer.

The rule, exactly: an answer is changed only if it *starts* with a role marker, which is

1. at most 8 whitespace characters (spaces, tabs, carriage returns, newlines), then
2. optionally the chat-template token ``<|im_start|>``, then
3. the word ``assistant`` in any letter case, then
4. either a newline, or a colon optionally followed by one space or one newline.

Only that marker is removed, once; everything after it is kept byte for byte. So ``"assistant\\nThe
cat"`` becomes ``"The cat"``, while ``"I am an AI assistant."``, ``"Assistant managers earn…"`` and
``"The assistant:"`` are left alone. (An answer that really begins with the word "Assistant" followed
by a colon or a line break is indistinguishable from a leak and is treated as one.)

The course document's ``text.split("assistant", 1)`` instead cuts at the *first* "assistant"
anywhere, so ``"I am an AI assistant. The image shows a cat."`` becomes ``". The image shows a cat."``.
"""

from __future__ import annotations

import re

__all__ = ["strip_role_prefix", "RolePrefixStripper", "MAX_PREFIX_LEN"]

_MAX_SPACE = 8
_IM_START = "<|im_start|>"
_WORD = "assistant"
_TERMINATORS = ("\n", ":", ": ", ":\n")
_MARKER = re.compile(r"[ \t\r\n]{0,8}(?:<\|im_start\|>)?(?ai:assistant)(?:\n|:[ \n]?)")

#: The longest marker the rule can remove; a stream holds back at most this many characters.
MAX_PREFIX_LEN = _MAX_SPACE + len(_IM_START) + len(_WORD) + 2


def strip_role_prefix(text: str) -> str:
    """Remove a leaked leading role marker (see the module docstring for the exact rule).

    Example:
        >>> strip_role_prefix("assistant\\nThe image shows a cat.")
        'The image shows a cat.'
        >>> strip_role_prefix("I am an AI assistant. The image shows a cat.")
        'I am an AI assistant. The image shows a cat.'
    """
    match = _MARKER.match(text)
    return text[match.end():] if match else text


def _prefix_matches(rest: str, form: str) -> bool:
    """``form`` starts with ``rest``, comparing the word 'assistant' without regard to case."""
    start = form.find(_WORD)
    for i, ch in enumerate(rest):
        want = form[i]
        if (ch.lower() if start <= i < start + len(_WORD) and ch.isascii() else ch) != want:
            return False
    return True


def _could_grow_into_marker(buffer: str) -> bool:
    """Whether more text could still change what the rule removes from ``buffer``."""
    rest = buffer.lstrip(" \t\r\n")
    if len(buffer) - len(rest) > _MAX_SPACE:
        return False
    if not rest:
        return True
    return any(
        len(form) > len(rest) and _prefix_matches(rest, form)
        for form in (head + end for head in (_IM_START + _WORD, _WORD) for end in _TERMINATORS)
    )


class RolePrefixStripper:
    """The incremental version of :func:`strip_role_prefix`, for streams.

    Feed it text deltas; it returns what can be shown now, holding back at most
    :data:`MAX_PREFIX_LEN` characters at the very start while they could still be a marker. Any
    chunking of a stream gives the same text as :func:`strip_role_prefix` on the whole.

    Example:
        >>> s = RolePrefixStripper()
        >>> [s.feed(d) for d in ["assis", "tant\\nThe", " cat"]] + [s.finish()]
        ['', 'The', ' cat', '']
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._decided = False

    def feed(self, delta: str) -> str:
        """Take the next delta; return the text that is now safe to show.

        Example:
            >>> RolePrefixStripper().feed("Hello")
            'Hello'
        """
        if self._decided:
            return delta
        self._buffer += delta
        if _could_grow_into_marker(self._buffer):
            return ""
        return self.finish()

    @property
    def pending(self) -> str:
        """What is held back right now, as it would be shown if the stream ended here.

        Example:
            >>> s = RolePrefixStripper(); s.feed("assist"); s.pending
            ''
            'assist'
        """
        return "" if self._decided else strip_role_prefix(self._buffer)

    def finish(self) -> str:
        """The stream ended (or the start is settled): return what was held back, cleaned.

        Example:
            >>> s = RolePrefixStripper(); s.feed("assistant:"); s.finish()
            ''
            ''
        """
        if self._decided:
            return ""
        self._decided = True
        out, self._buffer = strip_role_prefix(self._buffer), ""
        return out
