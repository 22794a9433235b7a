"""`make lab` opens JupyterLab's interface in the language labkit speaks (scripts/lab_language.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support import load_script

PLUGIN = "@jupyterlab/translation-extension:plugin"


def _overrides(prefix: Path) -> dict:
    return json.loads((prefix / "share/jupyter/lab/settings/overrides.json").read_text(encoding="utf-8"))


def test_a_chinese_locale_opens_jupyterlab_in_chinese_and_keeps_other_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("jupyterlab_language_pack_zh_CN", reason="the lab extra's Chinese language pack")
    settings = tmp_path / "share/jupyter/lab/settings"
    settings.mkdir(parents=True)
    (settings / "overrides.json").write_text(json.dumps({"other:plugin": {"x": 1}}), encoding="utf-8")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    for name in ("LABKIT_LANG", "LC_ALL", "LC_MESSAGES"):  # the locale decides (conftest sets LABKIT_LANG=en)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert load_script("lab_language").main() == 0
    assert _overrides(tmp_path) == {"other:plugin": {"x": 1}, PLUGIN: {"locale": "zh_CN"}}

    monkeypatch.setenv("LABKIT_LANG", "en")
    assert load_script("lab_language").main() == 0
    assert _overrides(tmp_path)[PLUGIN] == {"locale": "en"}


def test_a_damaged_overrides_file_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tmp_path / "share/jupyter/lab/settings"
    settings.mkdir(parents=True)
    (settings / "overrides.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("LABKIT_LANG", "zh")
    assert load_script("lab_language").main() == 0
    assert (settings / "overrides.json").read_text(encoding="utf-8") == "{not json"
