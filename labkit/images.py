"""Turning any image input into the data URL the backend wants, sized to what LLaVA-1.6 can see.

LLaVA-1.6 ("anyres") never looks at more than 672×672, 1008×336 or 336×1008 pixels: the server
resizes anything bigger. Downscaling on the client by ``min(1, max(672/short, 1008/long))`` keeps
the server's grid choice, so the model's input is unchanged while the upload shrinks a hundredfold.
"""

from __future__ import annotations

# `__tracebackhide__ = True` in a function makes IPython leave its frame out of tracebacks, so a
# student sees their own line and labkit's message, not labkit's internals.

import base64
import binascii
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

__all__ = [
    "ImageSource",
    "Resize",
    "encode_image",
    "describe_image",
    "ImageInfo",
    "llava_target_size",
    "estimate_image_tokens",
]

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Image.Image, Any]
Resize = Union[Literal["llava"], int, None]

#: Largest side LLaVA-1.6 keeps, and the short side of its 672×672 grid.
LLAVA_LONG_SIDE, LLAVA_SHORT_SIDE = 1008, 672
#: Refuse images with more pixels than this (a decompression-bomb guard).
MAX_PIXELS = 100_000_000
_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


def llava_target_size(width: int, height: int, resize: Resize = "llava") -> tuple[int, int]:
    """The size an image is sent at: never upscaled, no bigger than the model can see.

    ``resize="llava"`` uses ``min(1, max(672/short, 1008/long))``; an int caps the longest side at
    that many pixels; ``None`` keeps the original size.

    Example:
        >>> llava_target_size(4032, 3024)
        (1008, 756)
        >>> llava_target_size(300, 200)
        (300, 200)
    """
    __tracebackhide__ = True
    if resize is None:
        return width, height
    if resize == "llava":
        scale = min(1.0, max(LLAVA_SHORT_SIDE / min(width, height), LLAVA_LONG_SIDE / max(width, height)))
    elif isinstance(resize, int) and not isinstance(resize, bool) and resize > 0:
        scale = min(1.0, resize / max(width, height))
    else:
        raise ImageError(f"resize={resize!r} is not understood: use 'llava' (default), a longest side in pixels, or None.")
    return max(1, round(width * scale)), max(1, round(height * scale))


def estimate_image_tokens(width: int, height: int) -> int:
    """Tokens LLaVA-1.6 spends on an image of this size: 576 base features, the anyres grid's
    unpadded features, and one newline token per feature row.

    Example:
        >>> estimate_image_tokens(672, 672)
        2928
    """
    def fit(grid: tuple[int, int]) -> tuple[int, int]:
        gh, gw = grid
        scale = min(gw / width, gh / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        return effective, -(gw * gh - effective)

    gh, gw = max(_PINPOINTS, key=fit)
    rows, cols = gh // 336 * 24, gw // 336 * 24
    if width * rows > height * cols:
        rows -= 2 * ((rows - int(height * cols / width)) // 2)
    else:
        cols -= 2 * ((cols - int(width * rows / height)) // 2)
    return 576 + rows * cols + rows


def _read_source(src: object) -> tuple[bytes | None, Image.Image | None, str]:
    """Bytes (or an already open image) and a name for messages."""
    __tracebackhide__ = True
    if isinstance(src, Image.Image):
        return None, src, "the PIL image"
    if type(src).__module__ == "numpy" and hasattr(src, "shape"):
        return None, _from_array(src), "the NumPy array"
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), None, f"the {len(src)} bytes given"
    if isinstance(src, (str, os.PathLike)):
        path = Path(os.fspath(src)).expanduser()
        name = repr(os.fspath(src))
        if not path.exists():
            raise ImageError(
                f"No file at {name}: check the spelling, or give a path relative to the current folder ({os.getcwd()})."
            )
        if path.is_dir():
            raise ImageError(f"{name} is a folder, not an image file: pass one file inside it, "
                             f"e.g. {os.path.join(os.fspath(src), 'photo.jpg')!r}.")
        return path.read_bytes(), None, name
    if hasattr(src, "read"):
        data = src.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"The file object {getattr(src, 'name', src)!r} returned text: open the image with 'rb'.")
        return bytes(data), None, repr(getattr(src, "name", "the file object"))
    raise ImageError(
        f"Cannot use a {type(src).__name__} as an image: pass a file path, bytes, a file object opened with 'rb', "
        "a PIL.Image, a NumPy array, or an http(s)/data URL."
    )


def _from_array(array: Any) -> Image.Image:
    __tracebackhide__ = True
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ImageError(
            f"A NumPy array of shape {a.shape} is not an image: use (height, width), (height, width, 3) or (height, width, 4)."
        )
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(a)) <= 1.0 else 1.0
        a = np.clip(np.nan_to_num(a) * scale, 0, 255).astype(np.uint8)
    elif a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def _open_bytes(data: bytes, name: str) -> Image.Image:
    __tracebackhide__ = True
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:2048].lower()):
        raise ImageError(
            f"{name} is an SVG (vector) image, which the model cannot read: convert it to PNG first "
            "(export it from the drawing program, or use cairosvg.svg2png)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        img = None
    except UnidentifiedImageError:
        hint = " It looks like text, not an image." if data[:64].isascii() and data[:64].strip() else ""
        raise ImageError(f"{name} is not an image Pillow can read.{hint} Pass a JPEG, PNG, WebP, GIF, BMP or TIFF file.") from None
    if img is None or img.width * img.height > MAX_PIXELS:
        raise ImageError(
            f"{name} claims a huge pixel count (over {MAX_PIXELS // 1_000_000} megapixels): it is a decompression bomb "
            "or far larger than needed; resize it with an image editor first."
        )
    return img


def _to_rgb_or_l(img: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode to RGB or L; transparency is composited on white."""
    import numpy as np

    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("La", "RGBa"):  # premultiplied alpha: on white, colour + (255 - alpha)
        premultiplied = np.asarray(img, dtype=np.uint16)
        mixed = np.clip(premultiplied[..., :-1] + (255 - premultiplied[..., -1:]), 0, 255).astype(np.uint8)
        return Image.fromarray(mixed[..., 0] if img.mode == "La" else mixed)
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, rgba)
        return flat.convert("L" if img.mode == "LA" else "RGB")
    if img.mode.startswith("I") or img.mode == "F":  # 16-bit, 32-bit or float data
        values = np.asarray(img.convert("F") if img.mode.startswith("I;16") else img, dtype=np.float64)
        peak = float(np.nanmax(values)) if values.size else 0.0
        if img.mode == "F" and peak <= 1.0:
            values = values * 255.0  # floats in 0..1
        elif peak > 255:
            values = values / 256.0  # 16-bit range: keep the top 8 bits
        return Image.fromarray(np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8))
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("L", "RGB"):
        return img
    if img.mode == "LAB":
        from PIL import ImageCms

        lab_to_srgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                              "LAB", "RGB")
        return ImageCms.applyTransform(img, lab_to_srgb) or img
    try:
        return img.convert("RGB")  # CMYK, YCbCr, HSV, …
    except ValueError:
        raise ImageError(f"{name} uses the Pillow mode {img.mode!r}, which labkit cannot convert: save it as an "
                         "ordinary RGB PNG or JPEG first.") from None


def _is_graphic(img: Image.Image) -> bool:
    """Few distinct colours (line art, text, screenshots, diagrams): PNG keeps them sharp and small."""
    return img.getcolors(maxcolors=256 if img.mode == "RGB" else 48) is not None


def _load(img: Image.Image, name: str, resize: Resize, owned: bool) -> Image.Image:
    """Decode (at reduced scale where JPEG allows), turn upright, convert, downscale.

    ``owned`` says labkit opened ``img`` itself; a caller's image is never changed (its frame, size
    and pixels stay as they were)."""
    __tracebackhide__ = True
    try:
        if getattr(img, "is_animated", False):
            position = img.tell()
            img.seek(0)
            first = img.copy()
            if not owned:
                img.seek(position)
            img = first
        width, height = img.size
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        upright = (height, width) if turned else (width, height)
        target = llava_target_size(*upright, resize)
        if owned and img.format == "JPEG" and target != upright:
            img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", (target[1], target[0]) if turned else target)
        img.load()
        img = ImageOps.exif_transpose(img)  # a new image: the caller's stays as it was
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name} could not be decoded ({exc}); the file may be truncated or damaged: "
                         "download or export it again.") from None
    img = _to_rgb_or_l(img, name)
    if img.size != target:
        img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


def encode_image(
    src: ImageSource,
    *,
    resize: Resize = "llava",
    format: Literal["auto", "jpeg", "png"] = "auto",
    quality: int = 90,
) -> str:
    """Encode an image as a ``data:`` URL, upright and downscaled to what LLaVA-1.6 can see.

    ``src`` may be a path, ``bytes``, a binary file object, a ``PIL.Image``, a NumPy array, or an
    http(s)/data URL (passed through unchanged). EXIF orientation is applied; transparency is
    composited on white; 16-bit, palette, CMYK and 1-bit images are converted; an animation
    contributes its first frame. ``format="auto"`` picks PNG for images with few colours (line art,
    text, screenshots) and JPEG for photographs. ``resize=None`` sends the original size.

    Raises :class:`labkit.ImageError` for missing files, folders, SVG, non-images, truncated files and
    decompression bombs.

    Example:
        >>> from PIL import Image
        >>> url = encode_image(Image.new("RGB", (4032, 3024), "red"))
        >>> url[:22], describe_image(url).size
        ('data:image/png;base64,', (1008, 756))
    """
    __tracebackhide__ = True
    if isinstance(src, str) and src.startswith(("http://", "https://", "data:")):
        return src
    if format not in ("auto", "jpeg", "png"):
        raise ImageError(f"format={format!r} is not supported: use 'auto', 'jpeg' or 'png'.")
    if not 1 <= int(quality) <= 100:
        raise ImageError(f"quality={quality!r} is out of range: use 1–100 (90 is a good default).")
    data, img, name = _read_source(src)
    owned = img is None
    if img is None:
        assert data is not None
        img = _open_bytes(data, name)
    img = _load(img, name, resize, owned)
    chosen = format if format != "auto" else ("png" if _is_graphic(img) else "jpeg")
    out = io.BytesIO()
    if chosen == "png":
        img.save(out, format="PNG", compress_level=6)
    else:
        img.save(out, format="JPEG", quality=int(quality))
    return f"data:image/{chosen};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


@dataclass(frozen=True)
class ImageInfo:
    """What a data URL carries: format, pixel size, bytes, and the model's token cost."""

    format: str
    width: int
    height: int
    bytes: int
    url_chars: int
    image_tokens: int

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def __str__(self) -> str:
        return (f"{self.format} {self.width}×{self.height}, {self.bytes / 1024:.1f} KiB "
                f"({self.url_chars / 1024:.1f} KiB as base64), ~{self.image_tokens} image tokens")


def describe_image(data_url: str) -> ImageInfo:
    """Report what a data URL sends: format, pixels, bytes and estimated image tokens.

    Example:
        >>> from PIL import Image
        >>> print(describe_image(encode_image(Image.new("L", (672, 672)))))  # doctest: +ELLIPSIS
        PNG 672×672, ... ~2928 image tokens
    """
    __tracebackhide__ = True
    if not isinstance(data_url, str) or not data_url.startswith("data:") or ";base64," not in data_url[:100]:
        raise ImageError(f"describe_image needs a base64 data URL like 'data:image/jpeg;base64,…', got "
                         f"{str(data_url)[:40]!r}. Make one with labkit.encode_image(path).")
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("The data URL's payload is not valid base64: rebuild it with labkit.encode_image(path).") from None
    img = _open_bytes(raw, "the data URL")
    w, h = img.size
    return ImageInfo((img.format or "?").upper(), w, h, len(raw), len(data_url), estimate_image_tokens(w, h))
