"""What labkit says to a person exists in Chinese and English, and the catalogs are complete."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import load_script

import labkit
from labkit.i18n import language, translations


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_every_message_has_a_chinese_translation_that_keeps_its_placeholders() -> None:
    problems = load_script("catalogs").problems()
    assert problems == [], "\n".join(problems[:40])


def test_the_catalog_check_catches_a_dropped_placeholder_and_a_missing_translation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogs = load_script("catalogs")
    package = tmp_path / "labkit"
    package.mkdir()
    (package / "mod.py").write_text(
        'from .i18n import _\n'
        'A = _("No file at {path}: check the name.")\n'
        'B = _("A message nobody translated")\n',
        encoding="utf-8",
    )
    po = package / "locale" / "zh" / "LC_MESSAGES" / "labkit.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "No file at {path}: check the name."\nmsgstr "找不到文件：请检查文件名。"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(catalogs, "ROOT", tmp_path)
    monkeypatch.setattr(catalogs, "PACKAGE", package)
    monkeypatch.setattr(catalogs, "LOCALE", package / "locale")
    found = "\n".join(catalogs.problems())
    assert "has placeholders [], the message ['path']" in found
    assert "no translation for 'A message nobody translated'" in found
    assert "labkit.mo is missing" in found


def test_compiled_catalog_is_what_labkit_loads() -> None:
    zh = translations("zh")
    assert zh.__class__.__name__ != "NullTranslations", "labkit/locale/zh/LC_MESSAGES/labkit.mo was not found"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LABKIT_LANG": "zh"}, "zh"),
        ({"LABKIT_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "fr_FR.UTF-8"}, "en"),
        ({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "C.UTF-8"}, "zh"),
        ({"LC_ALL": "POSIX"}, "zh"),
        ({"LC_ALL": "POSIX", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LANG": "C.UTF-8", "LANGUAGE": "en_GB:en"}, "en"),
        ({}, "zh"),
        ({"LABKIT_LANG": "en"}, "en"),
    ],
)
def test_language_is_chinese_unless_LABKIT_LANG_or_a_locale_names_another(env: dict[str, str], expected: str) -> None:
    assert language(env) == expected


def test_an_image_error_speaks_chinese_or_english_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_LANG", "zh")
    with pytest.raises(labkit.ImageError) as zh:
        labkit.encode_image("no-such-photo.jpg")
    monkeypatch.setenv("LABKIT_LANG", "en")
    with pytest.raises(labkit.ImageError) as en:
        labkit.encode_image("no-such-photo.jpg")
    assert "no-such-photo.jpg" in str(zh.value) and _has_chinese(str(zh.value))
    assert "no-such-photo.jpg" in str(en.value) and not _has_chinese(str(en.value))


def test_the_command_line_speaks_the_locale(tmp_path: Path) -> None:
    labkit_cmd = shutil.which("labkit", path=str(Path(sys.executable).parent))
    assert labkit_cmd, "the labkit command is not installed beside this Python"
    env = {"PATH": str(Path(sys.executable).parent), "LANG": "zh_CN.UTF-8", "HOME": str(tmp_path)}
    done = subprocess.run([labkit_cmd, "chat", "--image", str(tmp_path / "missing.png"), "hi"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0
    assert "missing.png" in done.stderr and _has_chinese(done.stderr), done.stderr
