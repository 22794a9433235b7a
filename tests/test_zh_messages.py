"""Chinese is the course's language: it is the default where nothing names another, and a Chinese
message holds no untranslated English and no half-width punctuation after Chinese text.

Every message of the zh catalog is rendered (its placeholders filled), and so is every ``labkit`` help
page and a sample of argparse's own errors, under LABKIT_LANG=zh; tests/zh_text.py says what may stay in
English (quoted text, code, names). The default is checked in subprocesses with a clean environment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from support import load_script
from zh_text import english_words, punctuation_problems

from labkit.cli import main

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "labkit" / "locale" / "zh" / "LC_MESSAGES" / "labkit.po"


class _Value:
    """Fills any placeholder: ``{x}``, ``{x:.2f}``, ``{x!r}``, ``{x.attr}``, ``{x[0]}``."""

    def __format__(self, spec: str) -> str:
        return "7"

    def __repr__(self) -> str:
        return "'7'"

    def __getattr__(self, name: str) -> _Value:
        return self

    def __getitem__(self, key: object) -> _Value:
        return self


class _Fields(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> _Value:
        return _Value()


def render(text: str) -> str:
    """A message as a person sees it: brace placeholders filled, argparse's ``%`` ones too."""
    text = re.sub(r"%\([a-z_]+\)[sdr]|%[sdr]", "7", text)
    return text.format_map(_Fields())


def _zh_messages() -> list[tuple[str, str]]:
    with CATALOG.open("rb") as f:
        catalog = read_po(f, locale="zh")
    found = []
    for message in catalog:
        if message.id:
            ids = message.id if isinstance(message.id, (list, tuple)) else (message.id,)
            strings = message.string if isinstance(message.string, (list, tuple)) else (message.string,)
            found += [(ids[0], s) for s in strings]
    return found


def _problems(text: str) -> list[str]:
    return [f"English {w!r}" for w in english_words(text)] + [f"punctuation {p!r}" for p in punctuation_problems(text)]


def test_every_chinese_message_is_chinese_throughout() -> None:
    messages = _zh_messages()
    assert len(messages) > 300, "the zh catalog was not read"
    bad = [f"{msgid[:70]!r}: {', '.join(found)}\n    {shown[:160]}"
           for msgid, text in messages for shown in [render(text)] if (found := _problems(shown))]
    assert not bad, f"{len(bad)} Chinese message(s) with English words or half-width punctuation:\n" + "\n".join(bad)


def test_the_scan_finds_the_fragments_students_met() -> None:
    """The scan is not blind: the fragments of issue 15 are caught, and their fixed forms pass."""
    assert english_words("基础地址 http://x/v1（not set: embedded practice server）") == ["not", "set", "embedded",
                                                                                        "practice", "server"]
    assert english_words("API 密钥 (not set)") == ["not", "set"] and english_words("首个 token 用时 0.07 s") == ["s"]
    assert english_words("首个 token 用时 0.07 秒") == []
    assert punctuation_problems("labkit: 没有配置后端") and punctuation_problems("(菜单 Run > Run All)")
    assert english_words("菜单 Run > Run All Above Selected Cell") == ["Run", "Run", "All", "Above", "Selected",
                                                                       "Cell"]
    assert english_words("positional arguments:") == ["positional", "arguments"]
    assert _problems("labkit：请设置 LABKIT_BASE_URL，例如 `labkit doctor` 或 'llava-v1.6-34b'。") == []


def _help_pages(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    def run(*argv: str) -> str:
        with pytest.raises(SystemExit):
            main(list(argv))
        return capsys.readouterr().out

    pages = {"labkit --help": run("--help")}
    commands = re.findall(r"(?m)^ {4}([a-z][a-z-]+)\b", pages["labkit --help"])
    assert {"practice", "doctor", "chat", "workspace", "assignment", "grade", "serve"} <= set(commands), commands
    for command in commands:
        pages[f"labkit {command} --help"] = run(command, "--help")
    return pages


def test_every_help_page_is_chinese_argparse_words_included(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABKIT_LANG", "zh")
    pages = _help_pages(capsys)
    for name, page in pages.items():
        assert page.startswith("用法：labkit"), f"{name}:\n{page}"
        assert "选项：" in page and "显示这条帮助信息并退出" in page, f"{name}:\n{page}"
        text = re.sub(r"(?m)^ {4}[a-z][a-z-]+", "", page)  # the list of commands: the commands' names
        assert _problems(text) == [], f"{name}: {_problems(text)}\n{page}"
    assert "位置参数：" in pages["labkit chat --help"]
    monkeypatch.setenv("LABKIT_LANG", "en")
    assert "show this help message and exit" in _help_pages(capsys)["labkit chat --help"]


@pytest.mark.parametrize("argv", [[], ["chat"], ["practice", "--port", "x"], ["practice", "--dialect", "x"],
                                  ["doctor", "--bogus"], ["serve", "--tp", "x"], ["grade", "a"], ["practice", "--ho"]])
def test_argparse_errors_are_chinese(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LABKIT_LANG", "zh")
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    message = err.strip().splitlines()[-1]  # after the usage lines
    assert done.value.code == 2 and err.startswith("用法：labkit"), err
    assert re.match(r"labkit( [a-z]+)?：错误：", message), err
    assert _problems(message) == [], err
    for word in ("usage", "error", "argument", "invalid", "required", "unrecognized", "choose", "expected"):
        assert word not in message, err


def test_argparse_is_left_as_it_was() -> None:
    import argparse
    import gettext

    main_help = argparse._  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert argparse._ is main_help is gettext.gettext  # type: ignore[attr-defined]


def test_a_runtime_error_is_prefixed_with_full_width_punctuation(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("LABKIT_LANG", "zh")
    assert main(["chat", "--image", str(tmp_path / "missing.png"), "你好"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit：找不到文件"), err


def test_doctor_speaks_chinese_throughout(monkeypatch: pytest.MonkeyPatch, fastchat_url: str) -> None:
    from labkit.checkup import doctor

    monkeypatch.setenv("LABKIT_LANG", "zh")
    lines: list[str] = []
    assert doctor(echo=lines.append)
    monkeypatch.setenv("LABKIT_BASE_URL", fastchat_url)
    monkeypatch.setenv("LABKIT_API_KEY", "sk-course-1234567890")
    assert doctor(echo=lines.append)
    text = "\n".join(lines)
    assert "未设置：使用内置练习服务器" in text and "API 密钥 未设置" in text, text
    assert "API 密钥 …7890（20 个字符）" in text and "（LABKIT_BASE_URL）" in text, text
    for line in lines:  # the model's own answer is quoted backend text
        assert _problems(re.sub(r"：'.*'$", "", line)) == [], line
    assert not re.search(r"\d s\b", text), text


# --- the default language, in a clean environment ------------------------------------------------

def _labkit(env: dict[str, str], tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("labkit", path=str(Path(sys.executable).parent))
    assert command, "the labkit command is not installed beside this Python"
    clean = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path), **env}
    return subprocess.run([command, *argv], capture_output=True, text=True, env=clean, timeout=60)


@pytest.mark.parametrize(("env", "chinese"), [
    ({"LANG": "C.UTF-8"}, True),
    ({"LC_ALL": "POSIX"}, True),
    ({}, True),
    ({"LANG": "C.UTF-8", "LABKIT_LANG": "en"}, False),
    ({"LANG": "en_US.UTF-8"}, False),
    ({"LANG": "zh_CN.UTF-8"}, True),
])
def test_labkit_speaks_chinese_unless_told_otherwise(env: dict[str, str], chinese: bool, tmp_path: Path) -> None:
    done = _labkit(env, tmp_path, "chat", "--image", str(tmp_path / "missing.png"), "hi")
    assert done.returncode == 2 and "missing.png" in done.stderr, done.stderr
    assert done.stderr.startswith("labkit：找不到文件" if chinese else "labkit: No file"), (env, done.stderr)
    page = _labkit(env, tmp_path, "workspace", "--help").stdout
    assert page.startswith("用法：" if chinese else "usage:"), (env, page)


@pytest.mark.parametrize(("env", "locale"), [({}, "zh_CN"), ({"LANG": "C.UTF-8"}, "zh_CN"),
                                             ({"LC_ALL": "POSIX"}, "zh_CN"), ({"LABKIT_LANG": "en"}, "en"),
                                             ({"LANG": "en_US.UTF-8"}, "en")])
def test_make_labs_jupyterlab_speaks_chinese_unless_told_otherwise(
    env: dict[str, str], locale: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("jupyterlab_language_pack_zh_CN", reason="the lab extra's Chinese language pack")
    for name in ("LABKIT_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert load_script("lab_language").main() == 0
    overrides = (tmp_path / "share/jupyter/lab/settings/overrides.json").read_text(encoding="utf-8")
    assert f'"locale": "{locale}"' in overrides


def test_graded_notebooks_run_in_the_graders_language(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.grading.grade import _child_env

    monkeypatch.delenv("LABKIT_LANG")
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert _child_env()["LABKIT_LANG"] == "zh"  # the sandbox's C.UTF-8 would otherwise decide
    monkeypatch.setenv("LABKIT_LANG", "en")
    assert _child_env()["LABKIT_LANG"] == "en"
