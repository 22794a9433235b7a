"""Notebooks are committed without outputs, with tidy metadata, named NN-kebab-title, and never
install packages or carry keys; each opens with goals and ends with exercises that self-check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_lessons_exist() -> None:
    names = [nb.stem for nb in NOTEBOOKS]
    assert names[:6] == ["00-setup", "01-first-request", "02-images", "03-streaming-and-cleanup",
                         "04-conversations-and-parameters", "05-batch-evaluation"]
    assert "07-serve-with-vllm" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path: Path) -> None:
    assert re.fullmatch(r"\d\d-[a-z0-9]+(-[a-z0-9]+)*", path.stem), f"{path.name}: name it NN-kebab-title.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}, f"{path.name}: strip extra metadata"
    for i, cell in enumerate(nb["cells"]):
        where = f"{path.name} cell {i}"
        assert cell.get("metadata", {}) in ({}, None) or set(cell["metadata"]) <= {"tags"}, where
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, f"{where}: strip outputs"
            src = "".join(cell["source"])
            assert not re.search(r"^\s*[!%]\s*(pip|conda)\s+install", src, re.M), f"{where}: no installs in cells"
            assert not re.search(r"sk-[A-Za-z0-9]{20,}", src), f"{where}: no keys"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_structure(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    markdown = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "学习目标" in markdown[0], f"{path.name}: open with the learning goals"
    assert any("小结" in m for m in markdown), f"{path.name}: needs a summary"
    exercises = [m for m in markdown if re.search(r"\*\*练习 \d\*\*", m)]
    assert 2 <= len(exercises) <= 4, f"{path.name}: 2–4 exercises"
    assert sum(bool(re.search(r"\bcheck\w*\(", c)) for c in code) >= len(exercises), \
        f"{path.name}: each exercise has a self-check"
