"""The code passes ruff with httpx's rule set (configured in pyproject.toml: E, F, I, B, PIE at 120 columns)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from support import ROOT

CHECKED = ["labkit", "tests", "benchmarks", "scripts"]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed (the test extra has it)")
def test_ruff_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *CHECKED],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ruff found problems (fix them, or `ruff check --fix`):\n{done.stdout}{done.stderr}"
    assert "All checks passed" in done.stdout
