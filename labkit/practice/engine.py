"""Paced timing like one GPU serving with continuous batching (vLLM's scheduler, simplified).

Prefill (reading the prompt and images) takes time in proportion to the prompt's tokens, an image's
anyres tokens included, as a real prefill does; it occupies the GPU: part of each request's time to first token
is spent one request at a time, so a request that arrives while others are starting waits for them.
Decoding is batched: every running stream advances each step, but a step takes longer the more
streams share it. So time to first token and time per token both grow with the number of running
streams, as lesson 07 shows on a real server. Unpaced (``fast``) servers skip all of this.

Example:
    >>> from labkit.practice.config import PracticeConfig
    >>> engine = Engine(PracticeConfig(tokens_per_second=20))
    >>> engine.token_delay()
    0.05
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .config import PracticeConfig

__all__ = ["Engine"]

#: The share of a request's own time to first token during which it has the GPU to itself.
PREFILL_SHARE = 0.3
#: How much longer a decoding step gets for each other stream in the batch.
SLOWDOWN_PER_STREAM = 0.1


class Engine:
    """The pacing of one paced practice server (one per app)."""

    def __init__(self, config: PracticeConfig) -> None:
        self.config = config
        self.running = 0  # streams past their first token
        self._gpu: asyncio.Lock | None = None

    def _lock(self) -> asyncio.Lock:
        if self._gpu is None:  # created on the server's own event loop
            self._gpu = asyncio.Lock()
        return self._gpu

    def token_delay(self) -> float:
        """Seconds between two tokens of one stream, given the streams running now."""
        return (1.0 + SLOWDOWN_PER_STREAM * max(0, self.running - 1)) / self.config.tokens_per_second

    def prefill_seconds(self, prompt_tokens: int, images: int = 0) -> float:
        """Seconds a prompt of ``prompt_tokens`` tokens (``images`` of them images) takes to read, alone.

        Example:
            >>> from labkit.practice.config import PracticeConfig
            >>> Engine(PracticeConfig(ttft=0.1, prefill_tokens_per_second=1000)).prefill_seconds(2928, 1)
            3.028
        """
        config = self.config
        return config.ttft + config.ttft_per_image * images + prompt_tokens / config.prefill_tokens_per_second

    async def prefill(self, prompt_tokens: int, images: int = 0) -> None:
        """Wait as long as the prompt takes to read: queued behind other prefills, slower in a busy batch."""
        own = self.prefill_seconds(prompt_tokens, images)
        async with self._lock():
            await asyncio.sleep(own * PREFILL_SHARE * (1.0 + SLOWDOWN_PER_STREAM * self.running))
        await asyncio.sleep(own * (1.0 - PREFILL_SHARE))

    @asynccontextmanager
    async def decoding(self) -> AsyncIterator[None]:
        """Count a stream in the running batch while it sends its tokens."""
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
