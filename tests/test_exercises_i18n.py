"""The self-checks' feedback is translatable: every message in labkit/exercises has a Simplified
Chinese translation in labkit/locale/zh/parts/lessons.po that keeps each {placeholder}, and a check
speaks Chinese once that catalog is compiled."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "labkit" / "exercises"
PO = ROOT / "labkit" / "locale" / "zh" / "parts" / "lessons.po"
PLACEHOLDER = re.compile(r"(?<!\{)\{[^{}]*\}(?!\})")


def messages_in_code() -> set[str]:
    found = set()
    for path in EXERCISES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "N_")
                    and node.args and isinstance(node.args[0], ast.Constant)):
                found.add(node.args[0].value)
    return found


def catalog() -> dict[str, str]:
    pofile = pytest.importorskip("babel.messages.pofile")
    with PO.open("rb") as f:
        parsed = pofile.read_po(f)
    return {m.id: m.string for m in parsed if m.id}


def test_every_feedback_message_has_a_chinese_translation_with_the_same_placeholders() -> None:
    zh = catalog()
    missing = sorted(messages_in_code() - set(zh))
    assert not missing, f"add these to {PO.name}: {missing}"
    for msgid, msgstr in zh.items():
        assert msgstr, f"untranslated: {msgid!r}"
        assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(msgstr)), msgid
        assert re.search(r"[\u4e00-\u9fff]", msgstr), f"not Chinese: {msgstr!r}"


def test_a_check_speaks_chinese_with_the_compiled_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pofile = pytest.importorskip("babel.messages.pofile")
    mofile = pytest.importorskip("babel.messages.mofile")
    import gettext

    from labkit import i18n
    from labkit.exercises import lesson07

    with PO.open("rb") as f:
        parsed = pofile.read_po(f)
    (tmp_path / "zh" / "LC_MESSAGES").mkdir(parents=True)
    with (tmp_path / "zh" / "LC_MESSAGES" / "labkit.mo").open("wb") as f:
        mofile.write_mo(f, parsed)
    zh = gettext.translation("labkit", localedir=tmp_path, languages=["zh"])
    monkeypatch.setattr(i18n, "translations", lambda lang: zh)
    monkeypatch.setenv("LABKIT_LANG", "zh")
    lesson07.check_kv_bytes(60 * 8 * 128 * 2)
    printed = capsys.readouterr().out
    assert "❌ 练习 1：还没通过" in printed and "每一层要为每个 token 保存两份张量" in printed, printed
