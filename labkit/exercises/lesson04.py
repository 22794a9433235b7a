"""Self-checks of lesson 04 (conversations and the context budget): comparing two images within one
image per request and 4,096 tokens, and the room left for an answer.

Example:
    >>> bool(check_room(lambda messages: 4096, quiet=True))
    False
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..i18n import _
from ..messages import estimate_tokens, system, user
from ._common import N_, Checker, Verdict, call_student, guarded, need, not_callable
from ._images import decode_data_url, image_urls

__all__ = ["need", "CONTEXT_TOKENS", "check_compare_two", "check_room"]

CONTEXT_TOKENS = 4096


def _share(image: Image.Image, colour: str) -> float:
    """The fraction of pixels that are clearly red (or blue)."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    mask = (r > 150) & (g < 110) & (b < 110) if colour == "red" else (b > 150) & (r < 110) & (g < 110)
    return float(mask.mean())


class _StandIn:
    """The ``ask`` given to the student's function: records each request, checks its budget, and
    answers with what it sees (a stand-in model: the check does not depend on any backend)."""

    def __init__(self) -> None:
        self.requests: list[tuple[list[Any], Any]] = []

    def __call__(self, messages: list[Any], max_tokens: int | None = None, **options: Any) -> str:
        self.requests.append((messages, max_tokens))
        colours = []
        for url in image_urls(messages):
            image = decode_data_url(url)
            if image is not None:
                colours += [c for c in ("red", "blue") if _share(image, c) > 0.15]
        if colours:
            return "I see " + " and ".join(colours) + "."
        return "Compared with the first one, the second image is a different colour."


def _pictures(folder: Path, size_a: tuple[int, int], size_b: tuple[int, int]) -> tuple[str, str]:
    rng = np.random.default_rng(1)
    paths = []
    for name, size, colour in (("a.jpg", size_a, (200, 30, 30)), ("b.jpg", size_b, (30, 30, 200))):
        noise = rng.integers(-20, 20, (size[1], size[0], 3))
        Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        paths.append(str(folder / name))
    return paths[0], paths[1]


@guarded(1)
def check_compare_two(compare_two: Callable[..., str], *, quiet: bool = False) -> Verdict:
    """Exercise 1: ``compare_two(path_a, path_b, ask)`` compares two pictures using ``ask(messages,
    max_tokens=...)`` for each request; every request holds at most one image and fits the context.

    The check calls it with a red and a blue picture (small ones, then two 3-megapixel photos) and a
    stand-in ``ask`` that records every request.

    Example:
        >>> bool(check_compare_two(lambda a, b, ask: "same", quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    if not_callable(c, compare_two, "compare_two"):
        return c.done()
    with tempfile.TemporaryDirectory(prefix="labkit-check-") as tmp:
        for name, sizes in ((N_("two small pictures"), ((400, 300), (300, 400))),
                            (N_("two 3-megapixel photos"), ((2016, 1512), (2016, 1512)))):
            folder = Path(tmp) / name.replace(" ", "-")
            case = _("case “{name}”").format(name=_(name))
            folder.mkdir()
            path_a, path_b = _pictures(folder, *sizes)
            ask = _StandIn()
            ok, answer = call_student(c, case, compare_two, path_a, path_b, ask)
            if not ok:
                continue
            if not ask.requests:
                c.fail(_("{case}: your function never called ask(...), so nothing was sent").format(case=case))
                continue
            saw = {"red": False, "blue": False}
            for n, (messages, max_tokens) in enumerate(ask.requests, 1):
                if not isinstance(messages, list):
                    c.fail(_("{case}, request {n}: ask() takes a list of messages, got {kind}")
                           .format(case=case, n=n, kind=type(messages).__name__))
                    continue
                urls = list(image_urls(messages))
                if len(urls) > 1:
                    c.fail(_("{case}, request {n} holds {count} images: the course backend takes one image per "
                             "request (and two photos would not fit in 4,096 tokens)").format(
                               case=case, n=n, count=len(urls)))
                if not isinstance(max_tokens, int) or max_tokens <= 0:
                    c.fail(_("{case}, request {n} has no max_tokens: without a limit a real engine may fill the "
                             "whole context").format(case=case, n=n))
                    continue
                try:
                    prompt = estimate_tokens(messages)
                except Exception as exc:  # a malformed message
                    c.fail(_("{case}, request {n}: the messages are not valid chat messages ({error})")
                           .format(case=case, n=n, error=exc))
                    continue
                if prompt + max_tokens > CONTEXT_TOKENS:
                    c.fail(_("{case}, request {n}: about {prompt} prompt tokens + max_tokens {max_tokens} = {total} > "
                             "{context}: this request would be rejected").format(
                        case=case, n=n, prompt=prompt, max_tokens=max_tokens, total=prompt + max_tokens,
                        context=CONTEXT_TOKENS))
                for url in urls:
                    image = decode_data_url(url)
                    if image is not None:
                        for colour in saw:
                            saw[colour] = saw[colour] or _share(image, colour) > 0.15
            if not all(saw.values()):
                unseen = [colour for colour, seen in saw.items() if not seen]
                c.fail(_("{case}: the model was never shown the {which} picture").format(
                    case=case, which=_("first") if unseen[0] == "red" else _("second")))
            c.expect(isinstance(answer, str) and answer.strip() != "",
                     _("{case}: return the comparison as a non-empty str (got {got!r})").format(case=case, got=answer))
    return c.done()


def _room_cases() -> list[tuple[str, list[Any]]]:
    rng = np.random.default_rng(2)
    photo = Image.fromarray(rng.integers(0, 255, (1008, 1344, 3), dtype=np.uint8))
    square = Image.new("RGB", (336, 336), (20, 120, 200))
    return [
        (N_("a short text question"), [user("Hi")]),
        (N_("a 4:3 photo and a question"), [system("Answer briefly."), user("What is in this photo?", photo)]),
        (N_("a Chinese question about a small square image"), [user("这张图片里有什么？请详细描述。", square)]),
        (N_("a long history with a photo"), [user("Describe this.", photo),
                                             {"role": "assistant", "content": "word " * 600},
                                             user("And in more detail?")]),
        (N_("a history longer than the context"), [user("Summarise: " + "long text " * 2500)]),
    ]


@guarded(2)
def check_room(room_for_answer: Callable[[list[Any]], int], *, quiet: bool = False) -> Verdict:
    """Exercise 2: ``room_for_answer(messages)`` is how many tokens are left for the answer in a
    4,096-token context (never negative), images included; within 32 tokens of labkit's estimate.

    Example:
        >>> bool(check_room(lambda messages: 0, quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    if not_callable(c, room_for_answer, "room_for_answer"):
        return c.done()
    for name, messages in _room_cases():
        case = _("case “{name}”").format(name=_(name))
        truth = max(0, CONTEXT_TOKENS - estimate_tokens(messages))
        ok, got = call_student(c, case, room_for_answer, [dict(m) for m in messages])
        if not ok:
            continue
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            c.fail(_("{case}: expected a number of tokens, got {got!r}").format(case=case, got=got))
        elif got < 0:
            c.fail(_("{case}: {got} is negative: when nothing is left, there is no room at all").format(
                case=case, got=got))
        elif truth == 0 and got != 0:
            c.fail(_("{case}: the history alone fills the context, so no room is left: {got} should be 0").format(
                case=case, got=got))
        elif abs(got - truth) > 32:
            c.fail(_("{case}: {got} tokens is {direction}; does your count include every message and the image "
                     "as it is sent?").format(case=case, got=got,
                                               direction=_("too many") if got > truth else _("too few")))
    return c.done()
