"""A pytest plugin for the nbval runs of test_lessons_on_front.py: records, for every notebook cell nbval
ran, its source and the text it showed, and writes them as JSON to the file named by ``NBVAL_OUTPUTS_FILE``.

Loaded with ``-p nbval_outputs`` (tests/fastchat on ``PYTHONPATH``) in the child pytest that nbval runs in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

import pytest

_cells: list[dict[str, str]] = []


def _shown(outputs: list[Any]) -> str:
    """The visible text of a cell's outputs: streams, errors and the first representation of displays."""
    text = []
    for out in outputs:
        if out.get("output_type") == "stream" or "text" in out:
            text.append(str(out.get("text", "")))
        elif "ename" in out:
            text.append(f"{out['ename']}: {out.get('evalue', '')}")
        elif out.get("data"):
            text.append(str(next(iter(out["data"].values()))) or "<display>")
    return "".join(text)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    yield
    cell = getattr(item, "cell", None)
    if call.when == "call" and cell is not None:
        _cells.append({"source": cell.source, "shown": _shown(getattr(item, "test_outputs", None) or [])})


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("NBVAL_OUTPUTS_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_cells, f, ensure_ascii=False)
