"""The self-checks' feedback speaks Chinese where the student reads Chinese (the catalog's completeness
for every message, the self-checks' included, is tests/test_i18n.py's job)."""

from __future__ import annotations

import pytest


def test_a_check_speaks_chinese_with_the_compiled_catalog(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.exercises import lesson07

    monkeypatch.setenv("LABKIT_LANG", "zh")
    lesson07.check_kv_bytes(60 * 8 * 128 * 2)
    printed = capsys.readouterr().out
    assert "❌ 练习 1：还没通过" in printed and "每一层要为每个 token 保存两份张量" in printed, printed


def test_the_same_check_speaks_english_when_asked(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.exercises import lesson07

    monkeypatch.setenv("LABKIT_LANG", "en")
    lesson07.check_kv_bytes(60 * 8 * 128 * 2)
    printed = capsys.readouterr().out
    assert "❌" in printed and not any("\u4e00" <= ch <= "\u9fff" for ch in printed), printed
