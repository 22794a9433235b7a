"""200 concurrent streaming clients against one `labkit practice --fast` process.

Each client sends an image (a sample photo, as labkit.encode_image sends it) and reads a ~200-token
answer. Prints completed, errors, p50/p99 time to first token and total tokens per second, beside the
goal. Run: .venv/bin/python benchmarks/bench_practice_concurrency.py [clients]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import IMAGES, percentile, practice_process  # noqa: E402

import labkit  # noqa: E402

CONTENT = b'"delta": {"content": '  # a content event in the FastChat dialect (the role event has none)


async def one_client(http: httpx.AsyncClient, url: str, body: bytes) -> tuple[float, int]:
    """One streaming request; returns (time to first token, content events). The client only counts
    bytes, so that its own parsing does not slow the server it measures (both share 2 cores)."""
    started = time.perf_counter()
    ttft, tokens, tail = None, 0, b""
    async with http.stream("POST", f"{url}/chat/completions", content=body,
                           headers={"content-type": "application/json"}) as r:
        r.raise_for_status()
        async for data in r.aiter_raw():
            seen = (tail + data).count(CONTENT)
            if seen and ttft is None:
                ttft = time.perf_counter() - started
            tokens += seen
            tail = data[-len(CONTENT):]
            if tail.count(CONTENT):
                tail = b""
    if ttft is None:
        raise RuntimeError("no tokens")
    return ttft, tokens


async def run(url: str, clients: int) -> None:
    names = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "camera.png"]
    bodies = []
    for name in names:
        message = labkit.user("Describe this image in about 200 words.", os.path.join(IMAGES, name))
        bodies.append(json.dumps({"model": "llava-v1.6-34b", "messages": [message], "stream": True,
                                  "max_tokens": 400}).encode())
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await one_client(http, url, bodies[0])  # warm up one connection
        started = time.perf_counter()
        results = await asyncio.gather(*(one_client(http, url, bodies[i % len(bodies)]) for i in range(clients)),
                                       return_exceptions=True)
        wall = time.perf_counter() - started
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    ttfts = [t for t, _ in ok]
    tokens = sum(n for _, n in ok)
    print(f"clients {clients}, one server process, --fast, images {', '.join(names)}")
    print(f"{'':24}{'measured':>12}{'goal':>12}")
    print(f"{'completed':24}{len(ok):>12}{clients:>12}")
    print(f"{'errors':24}{len(errors):>12}{0:>12}")
    print(f"{'p50 time to first token':24}{percentile(ttfts, 50) * 1000:>10.0f}ms{'':>12}")
    print(f"{'p99 time to first token':24}{percentile(ttfts, 99) * 1000:>10.0f}ms{'≤ 250ms':>12}")
    print(f"{'tokens per answer':24}{tokens / max(1, len(ok)):>12.0f}{'~200':>12}")
    print(f"{'total tokens per second':24}{tokens / wall:>12.0f}{'':>12}")
    print(f"{'wall time':24}{wall:>11.2f}s")
    if errors:
        print("first error:", repr(errors[0]))


def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with practice_process("--fast") as url:
        for i in range(rounds):  # the client shares the 2 cores: rounds show the spread
            print(f"--- round {i + 1} of {rounds}")
            asyncio.run(run(url, clients))


if __name__ == "__main__":
    main()
