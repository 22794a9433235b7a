"""Turning any image input into the data URL the backend wants, sized to what LLaVA-1.6 can see.

LLaVA-1.6 ("anyres") picks one of five grids for an image (LLaVA-NeXT's ``select_best_resolution``)
and resizes the image to its *effective size* inside that grid: a 4032×3024 photo becomes 672×504.
The client sends exactly that size, with the long side 1 px larger to absorb rounding, so the
server makes the same choice and the model's input is unchanged while the upload shrinks a
hundredfold. Smaller images go as they are: the server never adds detail.
"""

from __future__ import annotations

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
from .i18n import _

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


def _best_pinpoint(width: int, height: int) -> tuple[tuple[int, int], float]:
    """LLaVA-NeXT's ``select_best_resolution``: the grid (width, height) the server picks for an
    image, and the scale it resizes the image by to fit that grid.

    For each pinpoint the effective size is ``(int(W·s), int(H·s))`` with ``s = min(pw/W, ph/H)``;
    the most effective pixels (capped at the original's) win, ties go to the least wasted area.
    """
    best: tuple[int, int] = _PINPOINTS[0]
    best_scale, best_effective, best_waste = 0.0, -1, 0
    for ph, pw in _PINPOINTS:  # (height, width), in the order of the model's config
        scale = min(pw / width, ph / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = pw * ph - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_scale, best_effective, best_waste = (pw, ph), scale, effective, waste
    return best, best_scale


def llava_target_size(width: int, height: int, resize: Resize = "llava") -> tuple[int, int]:
    """The size an image is sent at: the size LLaVA-1.6 really uses, never upscaled.

    ``resize="llava"`` sends the effective size of the grid the server picks
    (``select_best_resolution``), with the long side 1 px larger for rounding; an image the server
    would not shrink goes unchanged. An int caps the longest side at that many pixels; ``None``
    keeps the original size.

    Example:
        >>> llava_target_size(4032, 3024)
        (673, 505)
        >>> llava_target_size(20000, 50), llava_target_size(451, 300)
        ((1009, 3), (451, 300))
    """
    __tracebackhide__ = True
    if resize is None:
        return width, height
    if resize == "llava":
        scale = _best_pinpoint(width, height)[1]
        if scale >= 1.0:
            return width, height
        long_side, short_side = max(width, height), min(width, height)
        sent_long = min(long_side, int(long_side * scale) + 1)
        sent_short = min(short_side, max(1, round(short_side * sent_long / long_side)))
        return (sent_long, sent_short) if width >= height else (sent_short, sent_long)
    if isinstance(resize, int) and not isinstance(resize, bool) and resize > 0:
        scale = min(1.0, resize / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))
    raise ImageError(_("resize={resize} is not understood: use 'llava' (default), a longest side in pixels, "
                       "or None.").format(resize=repr(resize)))


def estimate_image_tokens(width: int, height: int) -> int:
    """Tokens LLaVA-1.6 spends on an image of this size: 576 base features, the anyres grid's
    unpadded features, and one newline token per feature row (as vLLM counts them).

    Example:
        >>> estimate_image_tokens(672, 672)
        2928
        >>> estimate_image_tokens(673, 505)
        2340
    """
    (gw, gh), _scale = _best_pinpoint(width, height)
    rows, cols = gh // 336 * 24, gw // 336 * 24
    if width * rows > height * cols:
        rows -= 2 * ((rows - int(round(height * cols / width, 7))) // 2)
    else:
        cols -= 2 * ((cols - int(round(width * rows / height, 7))) // 2)
    return 576 + rows * cols + rows


def _read_source(src: object) -> tuple[bytes | None, Image.Image | None, str]:
    """Bytes (or an already open image) and a name for messages."""
    __tracebackhide__ = True
    if isinstance(src, Image.Image):
        return None, src, _("the PIL image")
    if type(src).__module__ == "numpy" and hasattr(src, "shape"):
        return None, _from_array(src), _("the NumPy array")
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), None, _("the {n} bytes given").format(n=len(src))
    if isinstance(src, (str, os.PathLike)):
        path = Path(os.fspath(src)).expanduser()
        name = repr(os.fspath(src))
        if not path.exists():
            raise ImageError(_("No file at {name}: check the spelling, or give a path relative to the current "
                               "folder ({cwd}).").format(name=name, cwd=os.getcwd()))
        if path.is_dir():
            raise ImageError(_("{name} is a folder, not an image file: pass one file inside it, e.g. {example}.")
                             .format(name=name, example=repr(os.path.join(os.fspath(src), "photo.jpg"))))
        try:
            return path.read_bytes(), None, name
        except OSError as exc:
            raise ImageError(_("{name} cannot be read ({reason}): check that the file is yours to read "
                               "and not still being copied.").format(name=name, reason=exc.strerror or exc)) from None
    if hasattr(src, "read"):
        data = src.read()
        label = repr(getattr(src, "name", "the file object"))
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(_("The file object {name} returned text: open the image with 'rb'.").format(name=label))
        return bytes(data), None, label
    raise ImageError(_("Cannot use a {kind} as an image: pass a file path, bytes, a file object opened with 'rb', "
                       "a PIL.Image, a NumPy array, or an http(s)/data URL.").format(kind=type(src).__name__))


def _from_array(array: Any) -> Image.Image:
    __tracebackhide__ = True
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ImageError(_("A NumPy array of shape {shape} is not an image: use (height, width), "
                           "(height, width, 3) or (height, width, 4).").format(shape=a.shape))
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


# ISO-BMFF brands (bytes 8-12 after "ftyp") of formats Pillow cannot open without a plugin.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
_AVIF_BRANDS = (b"avif", b"avis")


def _damaged(name: str, exc: BaseException) -> ImageError:
    reason = str(exc).strip() or type(exc).__name__
    return ImageError(_("{name} could not be decoded ({reason}): the file is truncated or damaged. Download or "
                        "export it again, or open it in an image viewer and save it as JPEG or PNG.")
                      .format(name=name, reason=reason[:200]))


def _not_an_image(data: bytes, name: str) -> ImageError:
    head = data[:64]
    brand = data[8:12] if data[4:8] == b"ftyp" else b""
    if brand in _HEIF_BRANDS and "HEIF" not in Image.ID:
        return ImageError(_("{name} is a HEIC/HEIF photo (the iPhone's default format), which Pillow cannot read "
                            "without a plugin: `pip install pillow-heif` and run `import pillow_heif; "
                            "pillow_heif.register_heif_opener()` first, or export the photo as JPEG.")
                          .format(name=name))
    if brand in _AVIF_BRANDS and "AVIF" not in Image.ID:
        return ImageError(_("{name} is an AVIF image, which this Pillow cannot read: upgrade Pillow "
                            "(`pip install -U pillow`, 11.3 or later reads AVIF) or convert the image to JPEG or PNG.")
                          .format(name=name))
    if brand:
        return _damaged(name, ValueError(_("an unreadable {brand} file").format(brand=brand.decode("latin-1"))))
    printable = bytes(range(32, 127)) + b"\t\r\n"
    if head.strip() and not head.translate(None, printable):
        return ImageError(_("{name} is not an image Pillow can read: it looks like text. Pass a JPEG, PNG, WebP, GIF, "
                            "BMP or TIFF file.").format(name=name))
    return ImageError(_("{name} is not an image Pillow can read (an unknown or damaged format). "
                        "Pass a JPEG, PNG, WebP, "
                        "GIF, BMP or TIFF file, or open it in an image viewer and save it as one.").format(name=name))


def _bomb(name: str) -> ImageError:
    return ImageError(_("{name} is a decompression bomb: it claims a huge pixel count (over {limit} megapixels) or "
                        "holds a compressed chunk that unpacks to far too much data. If it is a real picture, open it "
                        "in an image editor and save a smaller copy.").format(name=name, limit=MAX_PIXELS // 1_000_000))


def _open_bytes(data: bytes, name: str) -> Image.Image:
    __tracebackhide__ = True
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:2048].lower()):
        raise ImageError(_("{name} is an SVG (vector) image, which the model cannot read: convert it to PNG first "
                           "(export it from the drawing program, or use cairosvg.svg2png).").format(name=name))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": _orientation reads the EXIF again and says so
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(name) from None
    except UnidentifiedImageError:
        raise _not_an_image(data, name) from None
    except ValueError as exc:
        if "too large" in str(exc).lower():  # PNG's zTXt/iTXt/iCCP chunk over Pillow's MAX_TEXT_CHUNK
            raise _bomb(name) from None
        raise _damaged(name, exc) from None
    except Exception as exc:  # anything else Pillow meets in a damaged header
        raise _damaged(name, exc) from None
    if img.width * img.height > MAX_PIXELS:
        raise _bomb(name)
    if img.width < 1 or img.height < 1:
        raise _damaged(name, ValueError(f"{img.width}×{img.height} pixels"))
    return img


def _orientation(img: Image.Image, name: str) -> int:
    """The EXIF orientation (1 when there is none). Damaged EXIF is not worth refusing a photo for:
    the image goes as stored, with a warning that says so."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = img.info.get("exif")
            if isinstance(raw, bytes) and raw:
                exif = Image.Exif()
                exif.load(raw)  # a fresh parse: Image.open may have parsed it (and warned) already
            else:
                exif = img.getexif()
            value = exif.get(0x0112, 1)
        if not caught:
            return value if value in range(1, 9) else 1
    except Exception:  # Pillow raises many kinds on broken EXIF; or the pixel data itself is damaged
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()  # raises (and _load names the file) when the image, not just its EXIF, is damaged
    warnings.warn(_("{name}: its EXIF data is damaged, so its orientation is unknown; it is sent as stored "
                    "(rotate it yourself if it appears sideways).").format(name=name), stacklevel=4)
    return -1


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
        raise ImageError(_("{name} uses the Pillow mode {mode}, which labkit cannot convert: save it as an "
                           "ordinary RGB PNG or JPEG first.").format(name=name, mode=repr(img.mode))) from None


def _is_graphic(img: Image.Image) -> bool:
    """Few distinct colours (line art, text, screenshots, diagrams): PNG keeps them sharp and small."""
    return img.getcolors(maxcolors=256 if img.mode == "RGB" else 48) is not None


def _load(img: Image.Image, name: str, resize: Resize, owned: bool) -> Image.Image:
    """Decode (at reduced scale where JPEG allows), turn upright, convert, downscale.

    ``owned`` says labkit opened ``img`` itself; a caller's image is never changed (its frame, size
    and pixels stay as they were). Whatever Pillow raises on damaged data becomes an ImageError."""
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
        orientation = _orientation(img, name)
        turned = orientation in (5, 6, 7, 8)
        upright = (height, width) if turned else (width, height)
        target = llava_target_size(*upright, resize)
        if owned and img.format == "JPEG" and target != upright:
            img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", (target[1], target[0]) if turned else target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "truncated"/"corrupt EXIF" chatter: errors are raised below
            img.load()
            if orientation > 1:
                img = ImageOps.exif_transpose(img)  # a new image: the caller's stays as it was
        img = _to_rgb_or_l(img, name)
        if img.size != target:
            img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except ImageError:
        raise
    except Exception as exc:  # truncated data, broken chunks, bad EXIF offsets, codec errors …
        raise _damaged(name, exc) from None
    return img


def encode_image(
    src: ImageSource,
    *,
    resize: Resize = "llava",
    format: Literal["auto", "jpeg", "png"] = "auto",
    quality: int = 90,
) -> str:
    """Encode an image as a ``data:`` URL, upright and sized to what LLaVA-1.6 really uses.

    ``src`` may be a path, ``bytes``, a binary file object, a ``PIL.Image``, a NumPy array, or an
    http(s)/data URL (passed through unchanged). EXIF orientation is applied; transparency is
    composited on white; 16-bit, palette, CMYK and 1-bit images are converted; an animation
    contributes its first frame. ``format="auto"`` picks PNG for images with few colours (line art,
    text, screenshots) and JPEG for photographs. The size is :func:`llava_target_size`'s:
    ``resize=None`` sends the original size.

    Raises :class:`labkit.ImageError`, naming the input and the fix, for missing files, folders, SVG,
    HEIC/AVIF without a plugin, non-images, truncated or damaged files and decompression bombs.

    Example:
        >>> from PIL import Image
        >>> url = encode_image(Image.new("RGB", (4032, 3024), "red"))
        >>> url[:22], describe_image(url).size
        ('data:image/png;base64,', (673, 505))
    """
    __tracebackhide__ = True
    if isinstance(src, str) and src.startswith(("http://", "https://", "data:")):
        return src
    if format not in ("auto", "jpeg", "png"):
        raise ImageError(_("format={format} is not supported: use 'auto', 'jpeg' or 'png'.")
                         .format(format=repr(format)))
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ImageError(_("quality={quality} is out of range: use a whole number from 1 to 100 (90 is a good "
                           "default).").format(quality=repr(quality)))
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
        img.save(out, format="JPEG", quality=quality)
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
        return _("{format} {width}×{height}, {kib:.1f} KiB ({url_kib:.1f} KiB as base64), "
                 "~{tokens} image tokens").format(
            format=self.format, width=self.width, height=self.height, kib=self.bytes / 1024,
            url_kib=self.url_chars / 1024, tokens=self.image_tokens)


def describe_image(data_url: str) -> ImageInfo:
    """Report what a data URL sends: format, pixels, bytes and estimated image tokens.

    Example:
        >>> from PIL import Image
        >>> print(describe_image(encode_image(Image.new("L", (672, 672)))))  # doctest: +ELLIPSIS
        PNG 672×672, ... ~2928 image tokens
    """
    __tracebackhide__ = True
    if not isinstance(data_url, str) or not data_url.startswith("data:") or ";base64," not in data_url[:100]:
        raise ImageError(_("describe_image needs a base64 data URL like 'data:image/jpeg;base64,…', got {got}. "
                           "Make one with labkit.encode_image(path).").format(got=repr(str(data_url)[:40])))
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(_("The data URL's payload is not valid base64: rebuild it with "
                           "labkit.encode_image(path).")) from None
    img = _open_bytes(raw, _("the data URL"))
    w, h = img.size
    return ImageInfo((img.format or "?").upper(), w, h, len(raw), len(data_url), estimate_image_tokens(w, h))
