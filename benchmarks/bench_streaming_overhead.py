"""Streaming a 4,000-token answer from a `--fast` practice server: the raw openai SDK loop vs
labkit.chat (display=False) vs labkit.chat with a Jupyter-style live Markdown display.

All three use one shared client and run alternately; medians of 7 runs are printed side by side.
Goal: labkit adds ≤ 5 %. Run: .venv/bin/python benchmarks/bench_streaming_overhead.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import practice_process  # noqa: E402

import labkit  # noqa: E402
from labkit.display import JupyterView  # noqa: E402

QUESTION = "Write about 4000 words."


class RecordingHandle:
    """Stands in for a notebook output: keeps what would be rendered."""

    def __init__(self) -> None:
        self.last: Any = None

    def update(self, body: Any) -> None:
        self.last = body.data


def publish(body: Any, display_id: bool) -> RecordingHandle:
    handle = RecordingHandle()
    handle.update(body)
    return handle


def raw_sdk(client: Any) -> int:
    stream = client.chat.completions.create(model="llava-v1.6-34b", stream=True, max_tokens=4000,
                                            messages=[{"role": "user", "content": QUESTION}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return len(text)


def with_labkit(client: Any, display: Any) -> int:
    reply = labkit.chat(QUESTION, max_tokens=4000, client=client, display=display)
    return len(reply.text)


def main() -> None:
    with practice_process("--fast") as url:
        labkit.configure(base_url=url)
        client = labkit.client()
        runs: dict[str, list[float]] = {"raw openai SDK": [], "labkit.chat(display=False)": [],
                                        "labkit.chat + Jupyter display": []}
        renders = 0
        for i in range(16):
            for name in runs:
                view = JupyterView(publish) if "Jupyter" in name else False
                started = time.perf_counter()
                chars = raw_sdk(client) if name.startswith("raw") else with_labkit(client, view)
                elapsed = time.perf_counter() - started
                if i:  # the first round warms up
                    runs[name].append(elapsed)
                if isinstance(view, JupyterView):
                    renders = view.renders
        base = statistics.median(runs["raw openai SDK"])
        print(f"answer: {chars:,} characters, 4,000 tokens, one shared client, median of {len(runs['raw openai SDK'])}")
        print(f"{'':32}{'time':>10}{'overhead':>10}{'goal':>8}")
        for name, times in runs.items():
            t = statistics.median(times)
            over = "" if name.startswith("raw") else f"{(t / base - 1) * 100:+.1f}%"
            print(f"{name:32}{t * 1000:>8.0f}ms{over:>10}{'' if not over else '≤ 5%':>8}")
        print(f"Jupyter display: {renders} renders for the whole answer (throttled; the last one is exact)")


if __name__ == "__main__":
    main()
