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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import Dialect, FaultConfig, PracticeConfig, parse_faults
    from .server import PracticeServer, run_forever, serve_in_thread
    from .shared import start_embedded_server

# Imported on first use: a kernel that only finds this user's shared server (``shared``) never loads
# the web framework.
_WHERE = {"create_app": ".app", "Dialect": ".config", "FaultConfig": ".config", "PracticeConfig": ".config",
          "parse_faults": ".config", "PracticeServer": ".server", "run_forever": ".server",
          "serve_in_thread": ".server", "start_embedded_server": ".shared"}

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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value
