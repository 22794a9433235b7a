"""What the practice "model" sees of an image: size, orientation, colours, brightness, kind.

Deliberately simple and deterministic, so a student can check that the image was really read
("a red image is called red", "a 1008×756 image is reported as 1008×756").
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import hashlib
import io
import threading
import warnings
from collections import Counter, OrderedDict
from dataclasses import dataclass

from PIL import Image

__all__ = ["ImageFacts", "ImageDecodeError", "decode_data_url", "analyse", "image_tokens"]

# LLaVA-NeXT anyres grid (llava-hf/llava-v1.6-34b-hf config.json), tiles of 336 px, 24×24 features.
_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))
_TILE, _FEATURES = 336, 24


class ImageDecodeError(ValueError):
    """An image part could not be decoded; the message is meant for the student."""


@dataclass(frozen=True)
class ImageFacts:
    """The facts the practice model reports about one image."""

    width: int
    height: int
    format: str
    colours: tuple[tuple[str, float], ...]  # (name, fraction), most common first
    brightness: float  # mean luma 0..255
    kind: str  # "photo" | "drawing" | "text"
    regions: tuple[str, ...]  # dominant colour of each ninth, row by row

    @property
    def orientation(self) -> str:
        if self.width > self.height * 1.05:
            return "landscape"
        if self.height > self.width * 1.05:
            return "portrait"
        return "square"

    @property
    def tone(self) -> str:
        if self.brightness < 85:
            return "dark"
        if self.brightness > 170:
            return "bright"
        return "medium"


def decode_data_url(url: str) -> bytes:
    """Bytes of a ``data:image/…;base64,…`` URL, or ImageDecodeError saying what is wrong.

    Example:
        >>> decode_data_url("data:image/png;base64,aGk=")
        b'hi'
    """
    if url.startswith(("http://", "https://")):
        raise ImageDecodeError(
            "image_url is an http(s) URL, but this backend cannot fetch URLs: send the image itself as a "
            "base64 data URL (data:image/jpeg;base64,…), e.g. with labkit.encode_image(path)"
        )
    if not url.startswith("data:"):
        raise ImageDecodeError(
            f"image_url {url[:40]!r} is not a data URL: send 'data:image/jpeg;base64,<base64 bytes>' "
            "(labkit.encode_image(path) builds one)"
        )
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ImageDecodeError(
            f"data URL header {header[:40]!r} does not end in ';base64,': encode the image bytes with "
            "base64 and prefix them with 'data:image/jpeg;base64,'"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDecodeError(
            "the data URL's payload is not valid base64: encode the file's bytes with base64.b64encode(...).decode()"
        ) from None


def _hue_name(h: float, s: float, v: float) -> str:
    if v < 0.18:
        return "black"
    if s < 0.18:
        return "white" if v > 0.85 else "gray"
    deg = h * 360
    if deg < 15 or deg >= 340:
        return "brown" if v < 0.45 else ("pink" if s < 0.45 else "red")
    if deg < 40:
        return "brown" if v < 0.6 else "orange"
    if deg < 70:
        return "yellow" if v > 0.5 else "olive"
    if deg < 165:
        return "green"
    if deg < 195:
        return "cyan"
    if deg < 255:
        return "blue"
    if deg < 290:
        return "purple"
    return "pink"


_NAME_CACHE: dict[tuple[int, int, int], str] = {}


def _colour_name(rgb: tuple[int, int, int]) -> str:
    key = (rgb[0] >> 3, rgb[1] >> 3, rgb[2] >> 3)
    name = _NAME_CACHE.get(key)
    if name is None:
        r, g, b = ((c << 3) / 255 for c in key)
        name = _hue_name(*colorsys.rgb_to_hsv(r, g, b))
        _NAME_CACHE[key] = name
    return name


def image_tokens(width: int, height: int) -> int:
    """Image tokens LLaVA-1.6 spends on a ``width``×``height`` image (anyres, unpadded, newlines).

    Example:
        >>> image_tokens(672, 672)
        2928
    """
    best, best_fit, best_waste = _PINPOINTS[0], -1, 0
    for gh, gw in _PINPOINTS:
        scale = min(gw / width, gh / height)
        fit = min(int(width * scale) * int(height * scale), width * height)
        waste = gw * gh - fit
        if fit > best_fit or (fit == best_fit and waste < best_waste):
            best, best_fit, best_waste = (gh, gw), fit, waste
    rows, cols = best[0] // _TILE * _FEATURES, best[1] // _TILE * _FEATURES
    if width / height > cols / rows:
        new_rows = int(height * cols / width)
        rows -= 2 * ((rows - new_rows) // 2)
    else:
        new_cols = int(width * rows / height)
        cols -= 2 * ((cols - new_cols) // 2)
    return _FEATURES * _FEATURES + rows * cols + rows


#: Pillow's own refusal (``Image.MAX_IMAGE_PIXELS * 2``): what vLLM answers for a bigger image.
PIL_BOMB_PIXELS = 2 * 89_478_485
#: What the practice server decodes in full: formats without reduced-scale decoding (PNG, WebP, GIF…)
#: cost 4 bytes a pixel in Pillow, so this caps one decode at 128 MiB. JPEG decodes at 1/8 scale.
MAX_DECODED_PIXELS = 2**25
_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings() is process-wide: one opener at a time


def _bomb(pixels: int, limit: int) -> ImageDecodeError:
    # Pillow's DecompressionBombError wording, as vLLM relays it in its 400.
    return ImageDecodeError(f"Image size ({pixels} pixels) exceeds limit of {limit} pixels, could be "
                            "decompression bomb DOS attack.")


def _open(data: bytes) -> Image.Image:
    """Read the header only (nothing is decoded yet) and refuse images too large to decode."""
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")):
        raise ImageDecodeError("the image is SVG, which the model cannot read: convert it to PNG or JPEG first")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            img = Image.open(io.BytesIO(data))
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(str(exc)) from None
    except Exception as exc:  # Pillow raises many types for bad input
        raise ImageDecodeError(
            f"the image data is not an image Pillow can open ({exc.__class__.__name__}): send a JPEG, PNG, WebP or GIF"
        ) from None
    pixels = width * height
    if pixels > PIL_BOMB_PIXELS:
        raise _bomb(pixels, PIL_BOMB_PIXELS)
    if pixels <= 0:
        raise ImageDecodeError(f"the image is {width}×{height} pixels, which has no pixels: send a real image")
    if img.format != "JPEG" and pixels > MAX_DECODED_PIXELS:
        raise _bomb(pixels, MAX_DECODED_PIXELS)
    return img


_THUMB = (96, 96)


def _shrink(img: Image.Image) -> Image.Image:
    """Decode ``img`` and return a small RGB copy (at most 96×96), never holding more than the decoded
    image and the small one: shrink first, then convert and rotate the small copy."""
    exif_orientation = img.getexif().get(0x0112, 1)
    img.draft("RGB", _THUMB)  # JPEG: decode at 1/2, 1/4 or 1/8 scale
    img.load()
    # Sample down to at most 4× the thumbnail with NEAREST: for every mode, Pillow makes no full-size
    # copy then (a filtered resize of RGBA premultiplies the whole image first); then convert the
    # small copy and average it down with BOX.
    w, h = img.size
    coarse = min(1.0, 4 * _THUMB[0] / w, 4 * _THUMB[1] / h)
    if coarse < 1.0:
        small = img.resize((max(1, round(w * coarse)), max(1, round(h * coarse))), Image.Resampling.NEAREST)
    else:
        small = img.copy()
    img.close()
    if small.mode.startswith("I") or small.mode == "F":  # 16-bit or float data, e.g. a 16-bit PNG
        extrema = small.convert("F").getextrema()
        peak = float(extrema[1]) if isinstance(extrema[1], (int, float)) else 255.0
        factor = 255.0 if peak <= 1.0 else (1 / 256 if peak > 255 else 1.0)
        small = small.convert("F").point(lambda v: v * factor).convert("L")
    small = small.convert("RGBA") if small.mode in ("RGBA", "LA", "PA", "P", "La", "RGBa") else small.convert("RGB")
    if small.mode == "RGBA":
        white = Image.new("RGBA", small.size, (255, 255, 255, 255))
        small = Image.alpha_composite(white, small).convert("RGB")
    sw, sh = small.size
    scale = min(1.0, _THUMB[0] / sw, _THUMB[1] / sh)
    if scale < 1.0:
        small = small.resize((max(1, round(sw * scale)), max(1, round(sh * scale))), Image.Resampling.BOX)
    if exif_orientation in (2, 3, 4, 5, 6, 7, 8):
        method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                  7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}[exif_orientation]
        small = small.transpose(method)
    return small


def _facts(data: bytes) -> ImageFacts:
    img = _open(data)
    fmt = (img.format or "unknown").upper()
    width, height = img.size
    try:
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            width, height = height, width
        small = _shrink(img)
    except ImageDecodeError:
        raise
    except Exception as exc:  # damaged data surfaces as any of Pillow's (and zlib's) error types
        raise ImageDecodeError(
            f"the image data is damaged or truncated ({exc.__class__.__name__}: {str(exc)[:120]}): send the whole file"
        ) from None
    raw = small.tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    names = [_colour_name(p) for p in pixels]
    total = len(names)
    colours = tuple((n, c / total) for n, c in Counter(names).most_common(3))
    brightness = sum(small.convert("L").tobytes()) / total
    quantised = [(r >> 3, g >> 3, b >> 3) for r, g, b in pixels]
    same = sum(a == b for a, b in zip(quantised, quantised[1:], strict=False))
    kind = _kind(colours, same / max(1, total - 1))
    return ImageFacts(width, height, fmt, colours, brightness, kind, _regions(names, small.width, small.height))


def _kind(colours: tuple[tuple[str, float], ...], flatness: float) -> str:
    """Photos vary from pixel to pixel; drawings and text are mostly flat areas."""
    top_name, top_share = colours[0]
    if top_name in ("white", "black") and top_share > 0.6 and flatness > 0.6:
        return "text"
    if flatness > 0.6:
        return "drawing"
    return "photo"


def _regions(names: list[str], width: int, height: int) -> tuple[str, ...]:
    out = []
    for row in range(3):
        for col in range(3):
            ys = range(row * height // 3, max(row * height // 3 + 1, (row + 1) * height // 3))
            xs = range(col * width // 3, max(col * width // 3 + 1, (col + 1) * width // 3))
            cell = Counter(names[min(y, height - 1) * width + min(x, width - 1)] for y in ys for x in xs)
            out.append(cell.most_common(1)[0][0])
    return tuple(out)


class _Cache:
    """A small LRU of analyses keyed by the image's hash (vLLM caches processed images too)."""

    def __init__(self, size: int = 256) -> None:
        self._items: OrderedDict[bytes, ImageFacts] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, data: bytes) -> ImageFacts:
        key = hashlib.blake2b(data, digest_size=16).digest()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        facts = _facts(data)
        with self._lock:
            self._items[key] = facts
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return facts


_cache = _Cache()


def analyse(data: bytes) -> ImageFacts:
    """Analyse image bytes (cached by content hash). Raises ImageDecodeError for bad input.

    Example:
        >>> import io
        >>> buf = io.BytesIO(); Image.new("RGB", (40, 20), "red").save(buf, "PNG")
        >>> facts = analyse(buf.getvalue())
        >>> facts.width, facts.height, facts.colours[0][0], facts.orientation
        (40, 20, 'red', 'landscape')
    """
    return _cache.get(data)
