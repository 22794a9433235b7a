"""encode_image: every input kind, right way up, sized to what LLaVA-1.6 sees, clear errors."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin, features
from support import IMAGES, decode_data_url

from labkit import ImageError, describe_image, encode_image, llava_target_size


def noisy_photo(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 25, (height, width, 3))
    return Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8))


def test_phone_photo_is_downscaled_to_what_the_model_sees(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    noisy_photo(4032, 3024).save(path, quality=92)
    url = encode_image(path)
    sent = decode_data_url(url)
    assert sent.size == (673, 505) and sent.format == "JPEG"
    assert len(url) < path.stat().st_size / 5


def server_view(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """What LLaVA-NeXT's server does with an image it receives (select_best_resolution, written here
    from protocol.md on its own, as an oracle): the grid (w, h) and the size it resizes the image to."""
    best, best_fit, best_size = None, (-1, 0), (0, 0)
    for grid_h, grid_w in [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]:
        scale = min(grid_w / width, grid_h / height)
        size = (int(width * scale), int(height * scale))
        effective = min(size[0] * size[1], width * height)
        fit = (effective, -(grid_w * grid_h - effective))
        if fit > best_fit:
            best, best_fit, best_size = (grid_w, grid_h), fit, size
    assert best is not None
    return best, best_size


@pytest.mark.parametrize("size,expected", [((4032, 3024), (673, 505)), ((3024, 4032), (505, 673)),
                                           ((20000, 50), (1009, 3)), ((451, 300), (451, 300)),
                                           ((8000, 200), (1009, 25)), ((3000, 1000), (1009, 336)),
                                           ((3000, 2000), (673, 449)), ((10, 10), (10, 10))])
def test_target_size_is_the_size_the_server_uses(size: tuple[int, int], expected: tuple[int, int]) -> None:
    # protocol.md: the effective size of the grid select_best_resolution picks, long side + 1 px
    assert llava_target_size(*size) == expected


def test_the_server_makes_the_same_choice_on_what_is_sent() -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(50, 9000, size=(3000, 2))
    differ = 0
    for width, height in sizes.tolist():
        sent = llava_target_size(width, height)
        assert sent[0] <= width and sent[1] <= height, "never upscaled"
        grid, seen = server_view(width, height)
        grid_sent, seen_sent = server_view(*sent)
        same = grid == grid_sent and all(abs(a - b) <= 1 for a, b in zip(seen, seen_sent, strict=True))
        differ += not same
    assert differ <= 3, f"{differ} of 3000 sizes changed the server's grid or size (rounding ties only)"


def test_resize_options(tmp_path: Path) -> None:
    img = noisy_photo(2000, 1000)
    assert decode_data_url(encode_image(img, resize=None)).size == (2000, 1000)
    assert decode_data_url(encode_image(img, resize=500)).size == (500, 250)
    with pytest.raises(ImageError, match="resize="):
        encode_image(img, resize=-3)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "turned.jpg"
    img = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(img).rectangle((0, 0, 100, 200), fill="red")  # red on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(path, exif=exif, quality=95)
    sent = decode_data_url(encode_image(path)).convert("RGB")
    assert sent.size == (200, 400)
    assert sent.getpixel((100, 20))[0] > 200 and sent.getpixel((100, 20))[1] < 80, "red is now on top"


def test_every_input_kind(tmp_path: Path) -> None:
    path = IMAGES / "chelsea.jpg"
    expected = Image.open(path).size
    raw = path.read_bytes()
    inputs = [path, str(path), raw, bytearray(raw), io.BytesIO(raw), Image.open(path), np.asarray(Image.open(path))]
    for src in inputs:
        assert decode_data_url(encode_image(src)).size == expected, type(src)
    for url in ["https://example.com/cat.jpg", "data:image/png;base64,AAAA"]:
        assert encode_image(url) == url


@pytest.mark.parametrize("mode,expected", [
    ("1", (0, 0, 0)), ("L", (124,) * 3), ("LA", (124,) * 3), ("La", (124,) * 3), ("I;16", (124,) * 3),
    ("I", (124,) * 3), ("F", (124,) * 3), ("P", (0, 204, 51)), ("PA", (0, 204, 51)), ("RGB", (10, 200, 30)),
    ("RGBA", (10, 200, 30)), ("RGBa", (10, 200, 30)), ("CMYK", (10, 200, 30)), ("YCbCr", (10, 200, 30)),
    ("LAB", (10, 200, 30)), ("HSV", (10, 200, 30)),
])
def test_every_pillow_mode_keeps_its_colour(mode: str, expected: tuple[int, int, int]) -> None:
    img = Image.new("RGB", (64, 48), (10, 200, 30)).convert(mode)
    sent = decode_data_url(encode_image(img))
    assert sent.mode in ("RGB", "L") and sent.size == (64, 48)
    got = sent.convert("RGB").getpixel((32, 24))
    assert max(abs(g - e) for g, e in zip(got, expected, strict=True)) <= 12, (mode, got)


def test_a_callers_image_is_left_alone() -> None:
    img = Image.open(IMAGES / "rocket.jpg")
    encode_image(img, resize=100)
    assert img.size == (640, 427) and img.mode == "RGB"
    frames = [Image.new("RGB", (8, 8), c) for c in ("blue", "red")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    anim = Image.open(buf)
    anim.seek(1)
    encode_image(anim)
    assert anim.tell() == 1


def test_transparency_is_composited_on_white() -> None:
    img = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    sent = decode_data_url(encode_image(img, format="jpeg")).convert("RGB")
    assert min(sent.getpixel((5, 5))) > 240


def test_sixteen_bit_keeps_contrast() -> None:
    arr = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (16, 1))
    sent = np.asarray(decode_data_url(encode_image(Image.fromarray(arr))).convert("L"))
    assert sent[:, 0].max() < 10 and sent[:, -1].min() > 245


def test_animation_sends_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (40, 40), c) for c in ("blue", "red", "green")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    sent = decode_data_url(encode_image(path)).convert("RGB")
    r, g, b = sent.getpixel((20, 20))
    assert b > 200 and r < 50


def test_photo_is_jpeg_and_line_art_is_png() -> None:
    assert encode_image(IMAGES / "rocket.jpg").startswith("data:image/jpeg")
    assert encode_image(IMAGES / "camera.png").startswith("data:image/jpeg"), "a greyscale photo is still a photo"
    chart = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(chart)
    for i in range(10):
        draw.line((0, i * 60, 800, i * 60), fill="black", width=2)
        draw.text((10, i * 60 + 5), f"row {i}", fill="blue")
    assert encode_image(chart).startswith("data:image/png")


def test_describe_image_reports_what_is_sent() -> None:
    info = describe_image(encode_image(Image.new("RGB", (4032, 3024), "red")))
    assert (info.format, info.size) == ("PNG", (673, 505))
    assert info.image_tokens == 2340 and info.bytes > 0
    assert "673×505" in str(info)
    with pytest.raises(ImageError, match="base64 data URL"):
        describe_image("https://example.com/x.jpg")


def test_errors_name_the_input_and_the_fix(tmp_path: Path) -> None:
    cases: list[tuple[object, str]] = [
        (tmp_path / "missing.jpg", "No file at"),
        (tmp_path, "is a folder"),
        (b"hello, I am text", "not an image Pillow can read"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (12345, "Cannot use a int"),
        (np.zeros((2, 3, 7)), "is not an image"),
        (io.StringIO("text"), "open the image with 'rb'"),
    ]
    jpeg = io.BytesIO()
    noisy_photo(300, 200).save(jpeg, format="JPEG")
    cases.append((jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated"))
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, format="PNG")
    cases.append((bomb.getvalue(), "decompression bomb"))
    for src, needle in cases:
        with pytest.raises(ImageError) as info:
            encode_image(src)  # type: ignore[arg-type]
        assert needle in str(info.value), (src if not isinstance(src, bytes) else src[:20], str(info.value))


# ---------------------------------------------------------------- damaged and unusual files (issue 10 item 9)


def _saved(fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.open(IMAGES / "chelsea.jpg").save(out, format=fmt, **options)
    return out.getvalue()


def _png_with(**options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (10, 10), "red").save(out, format="PNG", **options)
    return out.getvalue()


def _bomb_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a" * (20 * 1024 * 1024), zip=True)  # 20 MB of text in a ~20 KB zTXt chunk
    return _png_with(pnginfo=info)


DAMAGED = [
    pytest.param(lambda: _saved("WEBP")[: len(_saved("WEBP")) // 2], "damaged", id="truncated-webp"),
    pytest.param(lambda: _saved("WEBP")[:40] + b"\xff" * 40 + _saved("WEBP")[80:], "damaged", id="corrupt-webp"),
    pytest.param(lambda: _saved("AVIF")[: len(_saved("AVIF")) // 2], "damaged" if features.check("avif") else "AVIF",
                 id="truncated-avif"),
    pytest.param(lambda: b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(200),
                 "damaged" if features.check("avif") else "AVIF", id="empty-avif"),
    pytest.param(_bomb_text, "decompression bomb", id="ztxt-bomb"),
    pytest.param(lambda: _png_with(icc_profile=bytes(20 * 1024 * 1024)), "decompression bomb", id="iccp-bomb"),
    pytest.param(lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200), "pillow-heif",
                 id="heic-without-plugin"),
    pytest.param(lambda: _saved("PNG")[:-200], "damaged", id="truncated-png"),
    pytest.param(lambda: b"\x89PNG\r\n\x1a\n" + bytes(100), "Pillow can read", id="png-signature-only"),
]


@pytest.mark.parametrize("make,needle", DAMAGED)
def test_a_damaged_file_is_an_image_error_naming_the_file(make: object, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "holiday photo.bin"
    path.write_bytes(make())  # type: ignore[operator]
    with pytest.raises(ImageError) as info:
        encode_image(path)
    message = str(info.value)
    assert repr(str(path)) in message and needle in message, message
    assert "text" not in message.split(":")[0], "a binary file is never called text"


def test_heic_is_not_called_text() -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    with pytest.raises(ImageError, match="HEIC") as info:
        encode_image(heic)
    assert "looks like text" not in str(info.value)


def test_a_jpeg_with_broken_exif_is_sent_as_stored_with_a_named_warning(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    out = io.BytesIO()
    Image.open(IMAGES / "chelsea.jpg").save(out, format="JPEG", exif=exif)
    data = bytearray(out.getvalue())
    exif_at = data.find(b"Exif\x00\x00")
    data[exif_at + 10:exif_at + 12] = b"\xff\xff"  # the first IFD's offset points past the end
    path = tmp_path / "broken-exif.jpg"
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="EXIF data is damaged") as caught:
        sent = decode_data_url(encode_image(path))
    assert sent.size == (451, 300), "sent as stored, not turned"
    assert all(repr(str(path)) in str(w.message) for w in caught), "every warning names the file"


def _mutants(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        b = bytearray(data)
        kind = i % 4
        if kind == 0:  # a few random bytes changed
            for pos in rng.integers(0, len(b), size=int(rng.integers(1, 9))).tolist():
                b[pos] = int(rng.integers(0, 256))
        elif kind == 1:  # cut short
            b = b[: int(rng.integers(1, len(b)))]
        elif kind == 2:  # a run of bytes in the header area overwritten
            pos = int(rng.integers(0, min(len(b), 600)))
            b[pos:pos + 16] = bytes(rng.integers(0, 256, size=16).tolist())
        else:  # a slice repeated (chunk lengths and offsets no longer agree)
            pos = int(rng.integers(0, len(b) - 1))
            b[pos:pos] = b[pos:pos + int(rng.integers(1, 400))]
        out.append(bytes(b))
    return out


def test_mutated_sample_images_never_raise_anything_but_image_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(2026)
    samples = {p.name: p.read_bytes() for p in sorted(IMAGES.glob("*.*")) if p.suffix in (".jpg", ".png")}
    samples["chelsea.webp"] = _saved("WEBP")
    samples["chelsea.gif"] = _saved("GIF")
    samples["chelsea.tiff"] = _saved("TIFF", compression="tiff_deflate")
    outcomes = {"sent": 0, "refused": 0}
    for name, data in samples.items():
        for i, mutant in enumerate(_mutants(data, rng, 40)):
            path = tmp_path / f"{i}-{name}"
            path.write_bytes(mutant)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    url = encode_image(path)
                except ImageError as exc:
                    assert repr(str(path)) in str(exc), str(exc)
                    outcomes["refused"] += 1
                else:
                    assert decode_data_url(url).size[0] >= 1
                    outcomes["sent"] += 1
            for w in caught:  # only labkit's own, named warnings reach a student
                assert repr(str(path)) in str(w.message), (name, i, str(w.message))
    assert outcomes["sent"] and outcomes["refused"], outcomes


def test_the_client_and_the_practice_server_count_image_tokens_alike() -> None:
    # written independently on purpose (the practice server shares no code with the client): a
    # disagreement means a bug in one of them
    from labkit.images import estimate_image_tokens
    from labkit.practice.vision import image_tokens

    rng = np.random.default_rng(11)
    for width, height in rng.integers(1, 6000, size=(3000, 2)).tolist() + [[673, 505], [1009, 3], [451, 300]]:
        assert estimate_image_tokens(width, height) == image_tokens(width, height), (width, height)
