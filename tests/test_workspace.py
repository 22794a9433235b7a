"""The student workspace: `labkit workspace` / labkit.sync_workspace copy lessons in, never over."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT

import labkit
from labkit.cli import main
from labkit.workspace import MARKER, sync


def lessons(tmp_path: Path) -> Path:
    src = tmp_path / "notebooks"
    (src / "images").mkdir(parents=True)
    (src / "01-first.ipynb").write_text('{"cells": []}')
    (src / "images" / "cat.jpg").write_bytes(b"\xff\xd8cat")
    (src / ".ipynb_checkpoints").mkdir()
    (src / ".ipynb_checkpoints" / "01-first-checkpoint.ipynb").write_text("old")
    (src / "outputs").mkdir()
    (src / "outputs" / "answers.jsonl").write_text("{}")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"")
    return src


def test_first_run_copies_lessons_and_images_only(tmp_path: Path) -> None:
    src = lessons(tmp_path)
    report = sync(src, tmp_path / "work")
    assert report.created
    assert report.added == ("01-first.ipynb", "images/cat.jpg")
    assert (tmp_path / "work" / "images" / "cat.jpg").read_bytes() == b"\xff\xd8cat"
    assert not (tmp_path / "work" / "outputs").exists()
    assert not (tmp_path / "work" / ".ipynb_checkpoints").exists()
    assert "01-first.ipynb" in report.summary() and "images/cat.jpg" in report.summary()


def test_edits_survive_and_new_lessons_are_added(tmp_path: Path) -> None:
    src, work = lessons(tmp_path), tmp_path / "work"
    sync(src, work)
    (work / "01-first.ipynb").write_text("my answers")
    (work / "scratch.ipynb").write_text("mine")
    (src / "01-first.ipynb").write_text('{"cells": ["course update"]}')
    (src / "02-next.ipynb").write_text('{"cells": []}')
    (src / "images" / "dog.png").write_bytes(b"png")
    report = sync(src, work)
    assert not report.created
    assert report.added == ("02-next.ipynb", "images/dog.png")
    assert report.kept == ("01-first.ipynb", "images/cat.jpg")
    assert (work / "01-first.ipynb").read_text() == "my answers"
    assert (work / "scratch.ipynb").read_text() == "mine"  # never deleted
    (src / "01-first.ipynb").unlink()
    assert sync(src, work).added == () and (work / "01-first.ipynb").read_text() == "my answers"


def test_a_student_file_in_the_way_is_kept(tmp_path: Path) -> None:
    src, work = lessons(tmp_path), tmp_path / "work"
    work.mkdir()
    (work / MARKER).touch()  # a workspace made earlier, where the student changed things
    (work / "images").write_text("I renamed my folder to a file")
    (work / "01-first.ipynb").mkdir()
    report = sync(src, work)
    assert report.added == ()
    assert set(report.kept) == {"01-first.ipynb", "images/cat.jpg"}
    assert (work / "images").read_text() == "I renamed my folder to a file"


@pytest.mark.parametrize("where", ["root", "home", "src", "inside-src", "parent-of-src", "git", "file", "empty"])
def test_dangerous_destinations_are_refused(tmp_path: Path, where: str) -> None:
    src = lessons(tmp_path / "course")
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "a-file").write_text("x")
    dest = {"root": Path("/"), "home": Path.home(), "src": src, "inside-src": src / "work",
            "parent-of-src": tmp_path / "course", "git": tmp_path / "repo", "file": tmp_path / "a-file",
            "empty": ""}[where]
    before = sorted(p.name for p in (tmp_path / "course" / "notebooks").iterdir())
    with pytest.raises(labkit.ConfigError, match="Refusing to use .* as a workspace: .*Choose a new folder"):
        sync(src, dest)
    assert sorted(p.name for p in (tmp_path / "course" / "notebooks").iterdir()) == before
    assert (tmp_path / "a-file").read_text() == "x"


def test_missing_lessons_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(labkit.ConfigError, match="No lessons folder at .*nowhere.*--from"):
        sync(tmp_path / "nowhere", tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_the_command_on_the_real_lessons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["workspace", str(tmp_path / "work"), "--from", str(ROOT / "notebooks")]
    assert main(args) == 0
    first = capsys.readouterr().out
    expected = sorted(p.relative_to(ROOT / "notebooks").as_posix() for p in (ROOT / "notebooks").rglob("*")
                      if p.is_file() and not p.name.startswith(".")
                      and not {".ipynb_checkpoints", "outputs", "__pycache__"} & set(p.parts))
    copied = sorted(p.relative_to(tmp_path / "work").as_posix() for p in (tmp_path / "work").rglob("*")
                    if p.is_file() and p.name != MARKER)
    assert copied == expected and "01-first-request.ipynb" in copied and "images/chelsea.jpg" in copied
    assert "created with" in first and "+ 01-first-request.ipynb" in first
    assert main(args) == 0 and "nothing new" in capsys.readouterr().out
    assert main(["workspace", "/"]) == 2
    assert "Refusing to use / as a workspace" in capsys.readouterr().err


def test_an_empty_name_a_tilde_and_a_folder_of_other_files_are_refused(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "lessons"
    src.mkdir()
    (src / "00-a.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(labkit.ConfigError, match="the path is empty"):
        sync(src, "")
    with pytest.raises(labkit.ConfigError, match="the path is empty"):
        sync(src, "   ")
    package = tmp_path / "package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    with pytest.raises(labkit.ConfigError, match="not a workspace labkit made"):
        sync(src, package)
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py"], "nothing was copied into it"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    report = sync(src, "~/work")
    assert report.dest == tmp_path / "home" / "work" and (tmp_path / "home" / "work" / MARKER).exists()
    assert not (tmp_path / "~").exists()
    assert sync(src, "~/work").kept == ("00-a.ipynb",)  # its own workspace: used again
