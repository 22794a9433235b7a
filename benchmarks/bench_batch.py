"""200 image questions against a practice server paced like the real model (about 0.5 s an answer),
16 at a time: labkit.run_batch against the best a user could write by hand, a raw async openai
client (AsyncOpenAI, streaming, an asyncio.Semaphore of 16, images encoded off the event loop with
labkit.encode_image so both send the same bytes). Same server, same prompts, one run, alternating
which goes first. Goal: run_batch's throughput ≥ 95 % of the raw client's.
Run: .venv/bin/python benchmarks/bench_batch.py [questions] [rounds]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time

from openai import AsyncOpenAI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import IMAGES, practice_process  # noqa: E402

import labkit  # noqa: E402

# reading the prompt made nearly free (100,000 tokens/s): this benchmark measures the batching, at ~0.5 s an answer
PACING = ("--ttft", "0.2", "--ttft-per-image", "0.1", "--prefill-tokens-per-second", "100000",
          "--tokens-per-second", "60")
MAX_TOKENS = 12  # 0.3 s to the first token + 11 tokens at 60/s ≈ 0.5 s an answer
QUESTION = "What colours are in this image?"
CONCURRENCY = 16
MODEL = "llava-v1.6-34b"
GOAL = 0.95


async def _raw_async(url: str, paths: list[str], concurrency: int, max_tokens: int) -> int:
    client = AsyncOpenAI(base_url=url, api_key="dummy_key", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(path: str | None) -> bool:
        async with gate:
            message = await asyncio.to_thread(labkit.user, QUESTION, path) if path else labkit.user(QUESTION)
            stream = await client.chat.completions.create(model=MODEL, messages=[message], stream=True,
                                                          max_tokens=max_tokens)
            parts = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
            return bool("".join(parts))

    try:
        return sum(await asyncio.gather(*(one(p) for p in paths)))
    finally:
        await client.close()


def raw_async_client(url: str, paths: list[str | None], concurrency: int = CONCURRENCY,
                     max_tokens: int = MAX_TOKENS) -> tuple[float, int]:
    """The best a user could write: (wall seconds, answers)."""
    started = time.perf_counter()
    answered = asyncio.run(_raw_async(url, paths, concurrency, max_tokens))  # type: ignore[arg-type]
    return time.perf_counter() - started, answered


def with_batch(url: str, paths: list[str | None], out: str, concurrency: int = CONCURRENCY,
               max_tokens: int = MAX_TOKENS) -> tuple[float, int]:
    """labkit.run_batch on the same questions: (wall seconds, answers)."""
    labkit.configure(base_url=url)
    items = [labkit.BatchItem(f"q{i}", QUESTION, path) for i, path in enumerate(paths)]
    started = time.perf_counter()
    result = labkit.run_batch(items, out, concurrency=concurrency, progress=False, max_tokens=max_tokens)
    return time.perf_counter() - started, result.answered


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    names = sorted(f for f in os.listdir(IMAGES) if f.endswith((".jpg", ".png")))
    paths: list[str | None] = [os.path.join(IMAGES, names[i % len(names)]) for i in range(n)]
    batch_times: list[float] = []
    raw_times: list[float] = []
    with practice_process(*PACING) as url, tempfile.TemporaryDirectory() as tmp:
        raw_async_client(url, paths[:CONCURRENCY])  # warm-up: connections, imports, the encoder
        for r in range(rounds):
            order = ("raw", "batch") if r % 2 == 0 else ("batch", "raw")
            for which in order:
                if which == "raw":
                    t, ok_raw = raw_async_client(url, paths)
                    raw_times.append(t)
                else:
                    t, ok_batch = with_batch(url, paths, os.path.join(tmp, f"answers{r}.jsonl"))
                    batch_times.append(t)
    t_raw, t_batch = statistics.median(raw_times), statistics.median(batch_times)
    share = t_raw / t_batch
    print(f"{n} image questions, concurrency {CONCURRENCY}, practice server paced at ~0.5 s an answer; "
          f"median of {rounds} rounds")
    print(f"{'':36}{'wall time':>10}{'answers/s':>11}{'answered':>10}")
    print(f"{'raw AsyncOpenAI (best by hand)':36}{t_raw:>9.2f}s{n / t_raw:>11.1f}{ok_raw:>10}")
    print(f"{'labkit.run_batch':36}{t_batch:>9.2f}s{n / t_batch:>11.1f}{ok_batch:>10}")
    print(f"run_batch throughput: {share:.1%} of the raw async client's (goal ≥ {GOAL:.0%}): "
          f"{'met' if share >= GOAL else 'NOT met'}")
    print("rounds (raw, batch): " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(raw_times, batch_times, strict=True)))


if __name__ == "__main__":
    main()
