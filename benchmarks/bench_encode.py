"""Encoding a 12-megapixel phone photo: the course document's way vs labkit.encode_image.

The document opens the photo and saves it as a full-size PNG; labkit decodes the JPEG at reduced
scale, resizes to the size LLaVA-NeXT really uses (its ``select_best_resolution`` effective size,
long side +1 px: 673×505) and sends a JPEG. Printed side by side from one run: bytes sent, time, and
how close the model's input is: each upload is resized the way the server does it (its own grid choice
and effective size, computed here independently of labkit, bicubic as the HF processor does) and the
two results are compared pixel by pixel at that size.
Goal: ≥ 400× fewer bytes than the document's PNG, PSNR ≥ 35 dB at the server's size (and ≥ 20× faster).
Run: .venv/bin/python benchmarks/bench_encode.py
"""

from __future__ import annotations

import base64
import io
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import labkit


def phone_photo(path: str) -> None:
    """A noisy 4032×3024 JPEG (noise is the worst case for size): a gradient plus sensor-like noise."""
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 4032, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, 3024, dtype=np.float32)[:, None, None]
    base = 255 * np.concatenate([x * np.ones_like(y), y * np.ones_like(x), (1 - x) * y], axis=2)
    Image.fromarray(np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)).save(path, quality=92)


def document_way(path: str) -> str:
    with Image.open(path) as img:
        buffered = io.BytesIO()
        img.save(buffered, format="PNG")
        return f"data:image/png;base64,{base64.b64encode(buffered.getvalue()).decode()}"


PINPOINTS = [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)]  # (height, width), the model's config


def server_size(width: int, height: int) -> tuple[int, int]:
    """LLaVA-NeXT's select_best_resolution (written from protocol.md, not from labkit): the size the
    server resizes a received image to before padding it into the chosen grid."""
    best, best_key = (width, height), (-1, 0)
    for grid_h, grid_w in PINPOINTS:
        scale = min(grid_w / width, grid_h / height)
        size = (int(width * scale), int(height * scale))
        effective = min(size[0] * size[1], width * height)
        key = (effective, -(grid_w * grid_h - effective))
        if key > best_key:
            best, best_key = size, key
    return best


def model_input(url: str) -> tuple[np.ndarray, tuple[int, int]]:
    """What the server feeds LLaVA-NeXT for an upload: the image resized to its effective size."""
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    size = server_size(*img.size)
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float32), img.size


def timed(fn, *args, repeat: int = 3) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    times, out = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "phone.jpg")
        phone_photo(path)
        print(f"input: 4032×3024 JPEG, {os.path.getsize(path) / 1e6:.1f} MB on disk")
        t_doc, doc = timed(document_way, path)
        t_kit, kit = timed(labkit.encode_image, path)
    (a, doc_size), (b, kit_size) = model_input(doc), model_input(kit)
    if a.shape != b.shape:
        raise SystemExit(f"the server would use different sizes: {a.shape} vs {b.shape} (a bug in encode_image)")
    mse = float(np.mean((a - b) ** 2))
    psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
    print(f"{'':22}{'document (PNG)':>16}{'labkit':>12}{'ratio':>10}{'goal':>8}")
    print(f"{'size sent':22}{'%d×%d' % doc_size:>16}{'%d×%d' % kit_size:>12}")
    ratio = len(doc) / len(kit)
    print(f"{'bytes sent':22}{len(doc) / 1e6:>14.2f}MB{len(kit) / 1e6:>10.3f}MB{ratio:>9.0f}×{'≥400×':>8}")
    print(f"{'time (median of 3)':22}{t_doc:>15.2f}s{t_kit:>11.3f}s{t_doc / t_kit:>9.0f}×{'≥20×':>8}")
    print(f"model input: both become {b.shape[1]}×{b.shape[0]} on the server; PSNR between them {psnr:.1f} dB "
          f"(goal ≥ 35 dB; mean abs diff {float(np.mean(np.abs(a - b))):.2f} of 255)")
    print("sent by labkit:", labkit.describe_image(kit))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
