"""The practice server: an offline stand-in for the course backend (FastChat + vLLM + llava-v1.6-34b).

It speaks FastChat's protocol byte for byte (or vLLM's with ``dialect="vllm"``), validates requests
like the real backend, and answers deterministically from what was sent: the image's size,
orientation, colours, brightness and kind, shaped by the question. Nothing here shares protocol code
with the labkit client helpers.

Example:
    >>> from labkit.practice import serve_in_thread
    >>> with serve_in_thread(fast=True) as base_url:
    ...     print(base_url)  # doctest: +ELLIPSIS
    http://127.0.0.1:.../v1
"""

from .app import create_app
from .config import Dialect, FaultConfig, PracticeConfig, parse_faults
from .server import PracticeServer, run_forever, serve_in_thread, start_embedded_server

__all__ = [
    "Dialect",
    "FaultConfig",
    "PracticeConfig",
    "PracticeServer",
    "create_app",
    "parse_faults",
    "run_forever",
    "serve_in_thread",
    "start_embedded_server",
]
