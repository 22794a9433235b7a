"""Self-checks of lesson 02 (images): tokens per photo, a size sweep, and a picture made from an array.

Example:
    >>> bool(check_green(None, None, quiet=True))
    False
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..config import load_settings
from ..i18n import _
from ..images import describe_image, encode_image, estimate_image_tokens
from ._common import Checker, Verdict, call_student, guarded, need, not_callable

__all__ = ["need", "check_image_tokens", "check_size_sweep", "check_green"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
# An answer cut by max_tokens this short is no answer; a longer cut one is accepted (a real model, and the
# course's tiny test model, may talk on until any limit).
SHORT_REPLY_TOKENS = 20


def _tokens_as_sent(width: int, height: int) -> int:
    """The image tokens of a picture of this size, as labkit sends it (the content does not matter)."""
    return describe_image(encode_image(Image.new("RGB", (width, height), (128, 128, 128)))).image_tokens


def _hidden_pictures(folder: Path) -> list[Path]:
    """Pictures the student has not seen: a 12-megapixel photo, a phone photo stored sideways with an EXIF
    orientation tag (as phones save portraits), a panorama, a tall strip, a tiny icon."""
    paths = []
    sideways = folder / "phone-portrait-exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° to view": stored 4032×3024, seen (and sent) 3024×4032
    Image.new("RGB", (4032, 3024), (150, 110, 80)).save(sideways, exif=exif)
    paths.append(sideways)
    for name, size in (("photo-4032x3024.jpg", (4032, 3024)), ("panorama-8000x200.jpg", (8000, 200)),
                       ("strip-300x1200.png", (300, 1200)), ("icon-50x50.png", (50, 50))):
        path = folder / name
        Image.new("RGB", size, (90, 140, 200)).save(path)
        paths.append(path)
    return paths


@guarded(1)
def check_image_tokens(image_tokens: Callable[[str], int], folder: str = "images", *, quiet: bool = False) -> Verdict:
    """Exercise 1: ``image_tokens(path)`` is the number of image tokens the model spends on the picture
    at ``path``, as labkit sends it. Checked on the lesson's images and on pictures you have not seen.

    Example:
        >>> bool(check_image_tokens(lambda path: 2928, quiet=True))
        False
    """
    c = Checker(1, quiet=quiet)
    if not_callable(c, image_tokens, "image_tokens"):
        return c.done()
    with tempfile.TemporaryDirectory(prefix="labkit-check-") as tmp:
        shown = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if Path(folder).is_dir() else []
        for path in shown + _hidden_pictures(Path(tmp)):
            with Image.open(path) as img:
                width, height = img.size
            case = _("case “{name}” ({width}×{height})").format(name=path.name, width=width, height=height)
            ok, got = call_student(c, case, image_tokens, str(path))
            if not ok:
                continue
            truth = describe_image(encode_image(path)).image_tokens
            if not isinstance(got, int) or isinstance(got, bool):
                c.fail(_("{case}: expected a whole number of tokens, got {got!r}").format(case=case, got=got))
            elif got != truth and got == estimate_image_tokens(width, height):
                c.fail(_("{case}: {got} is the count for the file's stored size. This photo carries an EXIF "
                         "orientation tag: labkit sends it turned upright (and scaled), so the model sees another "
                         "width and height. Count the image as it is sent, not as the file stores it").format(
                    case=case, got=got))
            elif got != truth:
                c.fail(_("{case}: {got} is {direction}. Count the tokens of the image as it is sent (tiles, the "
                         "overview, the newline tokens), not its pixels or bytes").format(
                    case=case, got=got, direction=_("too high") if got > truth else _("too low")))
    return c.done()


@guarded(2)
def check_size_sweep(rows: object, *, quiet: bool = False) -> Verdict:
    """Exercise 2: a list of measurements, one dict per image size, with the keys ``width``, ``height``,
    ``bytes`` (what was sent), ``tokens`` (image tokens) and ``ttft`` (seconds to the first token).

    Example:
        >>> bool(check_size_sweep([], quiet=True))
        False
    """
    c = Checker(2, quiet=quiet)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        c.fail(_("rows should be a list of dicts (one per size you measured), but it is {kind}")
               .format(kind=type(rows).__name__))
        return c.done()
    keys = {"width", "height", "bytes", "tokens", "ttft"}
    for i, row in enumerate(rows, 1):
        lacking = sorted(keys - set(row))
        if lacking:
            c.fail(_("row {i} lacks {keys}").format(i=i, keys=", ".join(lacking)))
    if c.problems:
        return c.done()
    if not rows:
        c.fail(_("rows is empty: measure at least 4 image sizes and append one dict per size"))
        return c.done()
    sizes = {(r["width"], r["height"]) for r in rows}
    c.expect(len(sizes) >= 4, _("measure at least 4 different sizes; you have {count}").format(count=len(sizes)))
    longest = [max(int(r["width"]), int(r["height"])) for r in rows]
    c.expect(min(longest) <= 336 and max(longest) >= 1000,
             _("cover small and large images: the longest side should go from 336 px or less to 1000 px or more "
               "(now {low}–{high} px)").format(low=min(longest), high=max(longest)))
    for i, row in enumerate(rows, 1):
        w, h = int(row["width"]), int(row["height"])
        truth = _tokens_as_sent(w, h)
        if row["tokens"] != truth:
            c.fail(_("row {i} ({w}×{h}): {got} image tokens is not what the model spends on this image as sent; "
                     "ask labkit rather than counting pixels").format(i=i, w=w, h=h, got=row["tokens"]))
        if not isinstance(row["bytes"], int) or isinstance(row["bytes"], bool) or row["bytes"] < 100:
            c.fail(_("row {i}: bytes should be the size of what was sent (an int), got {got!r}")
                   .format(i=i, got=row["bytes"]))
        elif row["bytes"] in (w * h * 3, w * h * 4, w * h):
            c.fail(_("row {i} ({w}×{h}): {got} bytes is width × height × channels, the raw pixels in memory. "
                     "What travels is the encoded picture (PNG or JPEG, as a data URL): measure the bytes of what "
                     "was sent").format(i=i, w=w, h=h, got=row["bytes"]))
        ttft = row["ttft"]
        if not isinstance(ttft, (int, float)) or isinstance(ttft, bool) or not 0 < ttft < 300:
            c.fail(_("row {i}: ttft should be the seconds until the first token (a positive number), got {got!r}")
                   .format(i=i, got=ttft))
    if not c.problems:
        by_size = sorted(rows, key=lambda r: int(r["width"]) * int(r["height"]))
        c.expect(by_size[-1]["bytes"] > by_size[0]["bytes"],
                 _("the largest image sent no more bytes than the smallest: are the bytes really measured per image?"))
    return c.done()


@guarded(3)
def check_green(green_image: Any, green_reply: Any, *, quiet: bool = False) -> Verdict:
    """Exercise 3: a 64×64 pure green picture made with NumPy, and the reply to a question about it.

    Only the picture and the reply's structure are checked: what a model says about it depends on the
    model (the practice server names the colour; a real model may answer in Chinese).

    Example:
        >>> import numpy as np
        >>> bool(check_green(np.zeros((64, 64, 3), np.uint8), None, quiet=True))
        False
    """
    c = Checker(3, quiet=quiet)
    shape = getattr(green_image, "shape", None)
    dtype = str(getattr(green_image, "dtype", ""))
    if shape is None:
        c.fail(_("green_image should be a NumPy array, but it is {kind}").format(kind=type(green_image).__name__))
    elif tuple(shape) != (64, 64, 3):
        c.fail(_("green_image has shape {shape}: a picture is (height, width, channels), here (64, 64, 3)")
               .format(shape=tuple(shape)))
    elif dtype != "uint8":
        c.fail(_("green_image has dtype {dtype}: 8-bit pictures hold whole numbers from 0 to 255 (uint8)")
               .format(dtype=dtype))
    else:
        red, green, blue = (float(green_image[..., k].mean()) for k in range(3))
        c.expect(green >= 200 and red <= 40 and blue <= 40,
                 _("green_image is not pure green: mean red/green/blue = {r:.0f}/{g:.0f}/{b:.0f}; which channel "
                   "is green, and which value is \"full\"?").format(r=red, g=green, b=blue))
    text = getattr(green_reply, "text", None)
    if text is None or not hasattr(green_reply, "finish_reason"):
        c.fail(_("green_reply should be what labkit.chat returns (a Reply), but it is {kind}")
               .format(kind=type(green_reply).__name__))
    else:
        reason = green_reply.finish_reason
        tokens = getattr(green_reply, "completion_tokens", None)
        if not (isinstance(text, str) and text.strip() != "" and reason in ("stop", "length")):
            c.fail(_("green_reply holds no finished answer (finish_reason {reason!r})").format(reason=reason))
        elif reason == "length" and isinstance(tokens, int) and tokens < SHORT_REPLY_TOKENS:
            c.fail(_("green_reply was cut off by max_tokens after {n} tokens (finish_reason 'length'): {text!r} is "
                     "not a complete answer. Leave the model room to finish its sentence").format(
                n=tokens, text=text[:60]))
        elif load_settings().base_url is None and not ("green" in text.lower() or "绿" in text):
            # the embedded practice server always names the colour of a picture it was sent
            c.fail(_("green_reply does not mention green although the practice server names the colour of every "
                     "picture it gets: was the picture sent with the question?"))
    return c.done()
