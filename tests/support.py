"""Test helpers shared by the test modules: where things are, and images as data URLs."""

from __future__ import annotations

import base64
import importlib.util
import io
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "notebooks" / "images"
CAPTURES = Path(__file__).resolve().parent / "fixtures" / "captures"


def png_data_url(width: int, height: int, colour: tuple[int, int, int] | str = (220, 20, 30)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decode_data_url(url: str) -> Image.Image:
    """Decode what a client would send, to assert on the pixels."""
    header, payload = url.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (the scripts are not a package) as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def processes_showing(secret: str, *, besides: tuple[int, ...] = ()) -> list[str]:
    """``PID: command line`` of every process whose command line (``ps``, /proc/PID/cmdline) holds ``secret``,
    other than ``besides``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if secret in text and int(cmdline.parent.name) not in besides:
            found.append(f"{cmdline.parent.name}: {text.strip()}")
    return found


def answers(url: str) -> bool:
    """Whether ``url`` answers with a success status now (a refused connection, a timeout or an error
    status: no)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:  # urllib's HTTPError and URLError are OSErrors
        return False


def wait_until_answering(proc: subprocess.Popen[bytes], ready: Callable[[], bool], *, what: str, seconds: float,
                         tail: Callable[[], str]) -> None:
    """Poll ``ready()`` every 0.3 s until it is true; fail, with ``tail()`` (the end of the server's log),
    when ``proc`` exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, f"{what} exited ({proc.returncode}):\n{tail()}"
        assert time.monotonic() < deadline, f"{what} did not answer within {seconds:g} s:\n{tail()}"
        if ready():
            return
        time.sleep(0.3)
