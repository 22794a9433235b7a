"""200 image questions against a practice server paced like the real model (about 0.5 s an answer):
the course document's style (PNG-encode, then one request after another) vs labkit.run_batch with
concurrency 16. Wall times printed side by side from one run. Goal: ≥ 12× faster.
Run: .venv/bin/python benchmarks/bench_batch.py [questions]   (the sequential half takes ~100 s)
"""

from __future__ import annotations

import base64
import io
import os
import sys
import tempfile
import time

from openai import OpenAI
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import IMAGES, practice_process  # noqa: E402

import labkit  # noqa: E402

# reading the prompt made nearly free (100,000 tokens/s): this benchmark measures the batching, at ~0.5 s an answer
PACING = ("--ttft", "0.2", "--ttft-per-image", "0.1", "--prefill-tokens-per-second", "100000",
          "--tokens-per-second", "60")
MAX_TOKENS = 12  # 0.3 s to the first token + 11 tokens at 60/s ≈ 0.5 s an answer
QUESTION = "What colours are in this image?"


def document_style(url: str, paths: list[str]) -> tuple[float, int]:
    client = OpenAI(base_url=url, api_key="dummy_key")
    started, answered = time.perf_counter(), 0
    for path in paths:
        with Image.open(path) as img:
            buffered = io.BytesIO()
            img.save(buffered, format="PNG")
            img_base64 = f"data:image/png;base64,{base64.b64encode(buffered.getvalue()).decode()}"
        response = client.chat.completions.create(
            model="llava-v1.6-34b", max_tokens=MAX_TOKENS, stream=True,
            messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION},
                                                   {"type": "image_url", "image_url": {"url": img_base64}}]}])
        text = "".join(c.choices[0].delta.content for c in response if c.choices[0].delta.content)
        answered += bool(text)
    return time.perf_counter() - started, answered


def with_batch(url: str, paths: list[str], out: str) -> tuple[float, int]:
    labkit.configure(base_url=url)
    items = [labkit.BatchItem(f"q{i}", QUESTION, path) for i, path in enumerate(paths)]
    started = time.perf_counter()
    result = labkit.run_batch(items, out, concurrency=16, progress=False, max_tokens=MAX_TOKENS)
    return time.perf_counter() - started, result.answered


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    names = sorted(f for f in os.listdir(IMAGES) if f.endswith((".jpg", ".png")))
    paths = [os.path.join(IMAGES, names[i % len(names)]) for i in range(n)]
    with practice_process(*PACING) as url, tempfile.TemporaryDirectory() as tmp:
        t_batch, ok_batch = with_batch(url, paths, os.path.join(tmp, "answers.jsonl"))
        t_doc, ok_doc = document_style(url, paths)
    print(f"{n} image questions, practice server paced at ~0.5 s an answer")
    print(f"{'':34}{'wall time':>10}{'answered':>10}")
    print(f"{'document style, one after another':34}{t_doc:>9.1f}s{ok_doc:>10}")
    print(f"{'labkit.run_batch, concurrency 16':34}{t_batch:>9.1f}s{ok_batch:>10}")
    print(f"speed-up: {t_doc / t_batch:.1f}× (goal ≥ 12×); per answer: {t_doc / n:.2f} s sequentially")


if __name__ == "__main__":
    main()
