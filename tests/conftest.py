"""Shared fixtures: an isolated environment for every test, practice servers, test images."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import labkit
from labkit.practice import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "notebooks" / "images"
CAPTURES = Path(__file__).resolve().parent / "fixtures" / "captures"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No LABKIT_*/OPENAI_* variable from the machine leaks into a test; configure() is undone."""
    for name in list(os.environ):
        if name.startswith(("LABKIT_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)
    labkit.reset_configuration()
    yield
    labkit.reset_configuration()


@pytest.fixture(scope="session")
def fastchat_url() -> Iterator[str]:
    with serve_in_thread(fast=True, dialect="fastchat") as url:
        yield url


@pytest.fixture(scope="session")
def vllm_url() -> Iterator[str]:
    with serve_in_thread(fast=True, dialect="vllm") as url:
        yield url


@pytest.fixture(params=["fastchat", "vllm"])
def any_url(request: pytest.FixtureRequest, fastchat_url: str, vllm_url: str) -> str:
    return fastchat_url if request.param == "fastchat" else vllm_url


def png_data_url(width: int, height: int, colour: tuple[int, int, int] | str = (220, 20, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decode_data_url(url: str) -> Image.Image:
    """Decode what a client would send, to assert on the pixels."""
    header, payload = url.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))
