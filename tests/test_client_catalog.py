"""The client's messages speak Chinese when asked (completeness of the catalog: tests/test_i18n.py)."""

from __future__ import annotations

import re

import pytest
from support import ROOT

CLIENT_FILES = ["streaming.py", "failures.py", "batch.py", "doctor.py", "config.py", "backend.py", "display.py"]
PO = ROOT / "labkit" / "locale" / "zh" / "LC_MESSAGES" / "labkit.po"


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"\{[^{}]*\}", text))


def test_the_catalog_speaks_chinese_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("babel")
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    import labkit.i18n as i18n
    from labkit.streaming import Reply

    with open(PO, "rb") as handle:
        catalog = read_po(handle)
    (tmp_path / "zh" / "LC_MESSAGES").mkdir(parents=True)
    with open(tmp_path / "zh" / "LC_MESSAGES" / "labkit.mo", "wb") as out:
        write_mo(out, catalog)
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.translations.cache_clear()
    monkeypatch.setenv("LABKIT_LANG", "zh")
    try:
        assert Reply(ttft=0.5, total_time=2.5, chunks=41).timings() == \
            "首个 token 0.50 秒 · 总计 2.50 秒 · 41 个 token · 20.0 token/秒"
    finally:
        i18n.translations.cache_clear()
