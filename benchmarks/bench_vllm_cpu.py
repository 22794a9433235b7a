"""Does labkit add delay? The raw openai SDK vs ``labkit.chat`` against a real vLLM on this CPU.

Starts the tiny random LLaVA-NeXT with ``VLLMServer`` (needs ``bash scripts/setup-vllm-cpu.sh`` and
``.venv-vllm/bin/python scripts/build_tiny_llava.py``; skipped with a message otherwise), then sends
the same streaming image request N times with each client, alternating, and prints the median time
to first token and total time side by side.

    .venv/bin/python benchmarks/bench_vllm_cpu.py [-n 10] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # labkit importable even before it is installed

import openai  # noqa: E402

import labkit  # noqa: E402
from labkit.serve import CPU_ENV, CPU_EXTRA_ARGS, OFFLINE_ENV, VLLMServer  # noqa: E402

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TINY_MODEL = Path(os.environ.get("LABKIT_TINY_MODEL") or REPO / "build" / "tiny-llava-next")
PHOTO = REPO / "notebooks" / "images" / "coffee.jpg"
SERVED_NAME = "llava-v1.6-34b"
PROMPT = "What is in this image?"


@dataclass(frozen=True)
class Sample:
    ttft: float
    total: float
    chars: int


def raw_sdk(client: openai.OpenAI, image_url: str, max_tokens: int) -> Sample:
    """The course document's way: openai SDK, streaming, first non-empty content delta = first token."""
    messages = [{"role": "user", "content": [
        {"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": image_url}}]}]
    start = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    stream = client.chat.completions.create(model=SERVED_NAME, messages=messages,  # type: ignore[arg-type]
                                            max_tokens=max_tokens, temperature=0.0, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if ttft is None:
                ttft = time.perf_counter() - start
            parts.append(chunk.choices[0].delta.content)
    total = time.perf_counter() - start
    return Sample(ttft if ttft is not None else total, total, len("".join(parts)))


def with_labkit(image_url: str, max_tokens: int, client: openai.OpenAI | None = None) -> Sample:
    """labkit.chat with display off; its own ttft (first token), total measured around the call."""
    start = time.perf_counter()
    reply = labkit.chat(PROMPT, image=image_url, max_tokens=max_tokens, temperature=0.0, display=False,
                        client=client)
    total = time.perf_counter() - start
    ttft = reply.ttft if reply.ttft is not None else total
    return Sample(ttft, total, len(reply.text))


def summarise(name: str, samples: list[Sample]) -> tuple[float, float]:
    ttft = statistics.median(s.ttft for s in samples)
    total = statistics.median(s.total for s in samples)
    print(f"{name:<28} {ttft * 1000:10.1f} {total * 1000:12.1f} {statistics.mean(s.chars for s in samples):9.1f}")
    return ttft, total


def run(n: int, max_tokens: int, server: VLLMServer) -> None:
    server.point_labkit()
    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY")
    started = time.perf_counter()
    image_url = labkit.encode_image(PHOTO)
    print(f"labkit.encode_image({PHOTO.name}): {(time.perf_counter() - started) * 1000:.1f} ms "
          f"({len(image_url) / 1e3:.0f} kB data URL), done once and sent by both clients")
    raw_sdk(client, image_url, max_tokens)  # warm-up: first request pays for lazy initialisation
    with_labkit(image_url, max_tokens)
    clients: dict[str, Callable[[], Sample]] = {
        "openai SDK (raw)": lambda: raw_sdk(client, image_url, max_tokens),
        "labkit.chat": lambda: with_labkit(image_url, max_tokens),
        "labkit.chat(client=)": lambda: with_labkit(image_url, max_tokens, client),
    }
    runs: dict[str, list[Sample]] = {name: [] for name in clients}
    for _ in range(n):  # alternate, so drift in the engine affects both alike
        for name, call in clients.items():
            runs[name].append(call())
    print(f"\n{n} sequential streaming image requests each, max_tokens {max_tokens}, temperature 0")
    print(f"{'client':<28} {'TTFT ms':>10} {'total ms':>12} {'chars':>9}   (medians; chars: mean)")
    medians = {name: summarise(name, samples) for name, samples in runs.items()}
    raw_ttft, raw_total = medians["openai SDK (raw)"]
    for name in ("labkit.chat", "labkit.chat(client=)"):
        ttft, total = medians[name]
        print(f"{name + ' - raw':<28} {(ttft - raw_ttft) * 1000:+10.1f} {(total - raw_total) * 1000:+12.1f}")
    print("(labkit reuses one openai client per configuration, so both labkit rows share its connections)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args(argv)
    if not VLLM_PYTHON.is_file() or not (TINY_MODEL / "config.json").is_file():
        print(f"skipped: needs {VLLM_PYTHON} and {TINY_MODEL} (make test-vllm creates both)")
        return 0
    for name in [k for k in os.environ if k.startswith(("LABKIT_", "OPENAI_"))]:
        del os.environ[name]
    workdir = Path(tempfile.mkdtemp(prefix="labkit-bench-vllm-"))
    server = VLLMServer(
        str(TINY_MODEL), served_model_name=SERVED_NAME, port=None, python=str(VLLM_PYTHON),
        gpu_memory_utilization=None, extra_args=CPU_EXTRA_ARGS, log_path=workdir / "vllm.log",
        env={**OFFLINE_ENV, **CPU_ENV, "VLLM_CACHE_ROOT": str(workdir / "cache")},
    )
    with server:
        print(f"vLLM (vllm-cpu, tiny LLaVA-NeXT) ready in {server.startup_seconds:.1f} s")
        run(args.n, args.max_tokens, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
