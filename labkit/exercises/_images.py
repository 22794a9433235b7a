"""Reading back the images a student's code put in a request (data URLs), for the checks."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["decode_data_url", "image_urls", "similar"]


def decode_data_url(url: str) -> Image.Image | None:
    """The image inside a ``data:image/...;base64,`` URL, or None when it is not one.

    Example:
        >>> decode_data_url("https://example.com/cat.jpg") is None
        True
    """
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        return None
    try:
        data = base64.b64decode(url.split(",", 1)[1], validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
    except (binascii.Error, ValueError, OSError):
        return None
    return image


def image_urls(messages: Any) -> Iterator[str]:
    """Every ``image_url`` part's URL in a list of chat messages (or in one message).

    Example:
        >>> list(image_urls([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]))
        ['x']
    """
    if isinstance(messages, dict):
        messages = [messages]
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    inner = part.get("image_url")
                    yield inner.get("url") if isinstance(inner, dict) else inner


def similar(a: Image.Image, b: Image.Image, tolerance: float = 24.0) -> bool:
    """Whether two images show the same picture (16×16 thumbnails, mean difference per channel).

    Example:
        >>> similar(Image.new("RGB", (40, 30), "red"), Image.new("RGB", (400, 300), "red"))
        True
    """
    ta = np.asarray(a.convert("RGB").resize((16, 16)), dtype=np.float32)
    tb = np.asarray(b.convert("RGB").resize((16, 16)), dtype=np.float32)
    return float(np.abs(ta - tb).mean()) <= tolerance
