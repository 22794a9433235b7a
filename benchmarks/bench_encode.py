"""Encoding a 12-megapixel phone photo: the course document's way vs labkit.encode_image.

The document opens the photo and saves it as a full-size PNG; labkit decodes the JPEG at reduced
scale, resizes to what LLaVA-1.6 sees (1008×756) and sends a JPEG. Printed side by side from one run:
bytes sent, time, and how close the model's input is (both resized the way the server does).
Goal: ≥ 100× fewer bytes and ≥ 20× faster, model input unchanged.
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


def model_input(url: str) -> np.ndarray:
    """What the server feeds LLaVA-1.6 for a 4:3 image: resized into the 1008×756 part of its grid."""
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(img.resize((1008, 756), Image.Resampling.BICUBIC), dtype=np.float32)


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
    a, b = model_input(doc), model_input(kit)
    mse = float(np.mean((a - b) ** 2))
    psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
    print(f"{'':22}{'document (PNG)':>16}{'labkit':>12}{'ratio':>10}{'goal':>8}")
    print(f"{'bytes sent':22}{len(doc) / 1e6:>14.2f}MB{len(kit) / 1e6:>10.3f}MB{len(doc) / len(kit):>9.0f}×{'≥100×':>8}")
    print(f"{'time (median of 3)':22}{t_doc:>15.2f}s{t_kit:>11.3f}s{t_doc / t_kit:>9.0f}×{'≥20×':>8}")
    print(f"model input: both become 1008×756 on the server; PSNR between them {psnr:.1f} dB "
          f"(mean abs diff {float(np.mean(np.abs(a - b))):.2f} of 255)")
    print("sent by labkit:", labkit.describe_image(kit))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
