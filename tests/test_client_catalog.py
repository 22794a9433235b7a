"""Every message the client side wraps in _() has a Chinese translation that keeps its placeholders."""

from __future__ import annotations

import re

import pytest
from support import ROOT

CLIENT_FILES = ["streaming.py", "failures.py", "batch.py", "doctor.py", "config.py", "backend.py", "display.py"]
PO = ROOT / "labkit" / "locale" / "zh" / "parts" / "client.po"


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"\{[^{}]*\}", text))


def test_every_client_message_is_translated_with_its_placeholders() -> None:
    extract = pytest.importorskip("babel.messages.extract")
    pofile = pytest.importorskip("babel.messages.pofile")
    wrapped: set[str] = set()
    for name in CLIENT_FILES:
        with open(ROOT / "labkit" / name, "rb") as source:
            for _line, message, _comments, _context in extract.extract("python", source, keywords={"_": None}):
                wrapped.add(message if isinstance(message, str) else message[0])
    with open(PO, "rb") as handle:
        catalog = {m.id: m.string for m in pofile.read_po(handle) if m.id}
    missing = sorted(m for m in wrapped if not catalog.get(m))
    assert not missing, f"no Chinese for: {missing[:5]}"
    for msgid in wrapped:
        assert _placeholders(catalog[msgid]) == _placeholders(msgid), msgid
        assert re.search(r"[\u4e00-\u9fff]", catalog[msgid]) or msgid in ("{n} tokens",), msgid


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
