"""The live Jupyter view: it throttles its renders on a fast stream and keeps a slow one moving."""

from __future__ import annotations

from labkit.display import JupyterView


class FakeHandle:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def update(self, body: object) -> None:
        self.log.append(body.data)  # type: ignore[attr-defined]


def test_jupyter_view_renders_o_n_and_ends_exact() -> None:
    log: list[str] = []

    def publish(body: object, display_id: bool) -> FakeHandle:
        log.append(body.data)  # type: ignore[attr-defined]
        return FakeHandle(log)

    clock = iter(i * 0.001 for i in range(100_000))  # a fast stream: one token a millisecond
    view = JupyterView(publish, clock=lambda: next(clock))
    text = ""
    for i in range(4000):
        delta = f" word{i}"
        text += delta
        view.update(delta)
    view.finish(text)
    assert log[-1] == text
    assert view.rendered_chars < 12 * len(text), "total rendering is linear in the answer's length"
    assert view.renders < 60


def test_jupyter_view_updates_at_least_twice_a_second() -> None:
    log: list[str] = []
    t = [0.0]
    view = JupyterView(lambda body, display_id: (log.append(body.data), FakeHandle(log))[1], clock=lambda: t[0])
    text = "x" * 10_000
    view.update(text)
    for _ in range(20):  # a slow stream: one character every 0.25 s on a long text
        t[0] += 0.25
        text += "y"
        view.update("y")
    assert len(log) >= 9


# --- An answer is shown as text, never interpreted (issue 16, item 2) -------------------------------------

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import mistune  # noqa: E402
import pytest  # noqa: E402
from IPython.core.formatters import DisplayFormatter  # noqa: E402

from labkit.display import AnswerMarkdown, inert_markdown  # noqa: E402

_render_html = mistune.create_markdown(escape=False)  # a Markdown renderer that lets raw HTML through


def _shown(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, str]:
    """What a notebook gets when the live view shows ``text`` (through IPython's real display), and
    the HTML a Markdown renderer makes of it."""
    monkeypatch.chdir(tmp_path)
    published: list[object] = []

    class Handle:
        def update(self, body: object) -> None:
            published.append(body)

    def publish(body: object, display_id: bool) -> Handle:
        published.append(body)
        return Handle()

    view = JupyterView(publish)
    view.update(text)
    view.finish(text)
    bundle, _meta = DisplayFormatter().format(published[-1])
    return bundle, _render_html(bundle["text/markdown"])


@pytest.mark.parametrize("text", ["httpx is a Python HTTP client.", "http://example.invalid/x", "images", "/",
                                  "notes.txt", ".", "~"])
def test_an_answer_that_looks_like_a_url_or_a_path_is_shown_as_text(
        text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "notes.txt").write_text("SECRET FILE CONTENT")
    bundle, html = _shown(text, tmp_path, monkeypatch)
    assert bundle["text/plain"].rstrip() == text.rstrip()
    assert bundle["text/markdown"] == text
    assert "SECRET" not in html
    assert text in html


def test_the_default_display_path_never_fetches_or_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """IPython's own display() (no publish given): before the fix these raised ValueError/IsADirectoryError."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "notes.txt").write_text("SECRET FILE CONTENT")
    for text in ("httpx is…", "images", "/", "notes.txt", os.fspath(tmp_path / "notes.txt")):
        view = JupyterView()
        view.update(text)
        view.finish(text)
    assert "SECRET" not in capsys.readouterr().out


def test_html_and_images_in_an_answer_load_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.png").write_bytes(b"\x89PNG")
    text = ('Here: <img src="notes.png"> and ![a photo](notes.png) and ![ref][r] <script>alert(1)</script>\n'
            '<iframe src="/files/notes.png"></iframe>\n\n[r]: notes.png\n\n'
            '\\<b>already escaped</b> \\`<img src=x>` and \\\\<img src="y.png">\n')
    bundle, html = _shown(text, tmp_path, monkeypatch)
    assert "<img" not in html and "<script" not in html and "<iframe" not in html and "<b>" not in html
    assert "&lt;img" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the words are shown
    assert bundle["text/plain"].rstrip() == text.rstrip()


def test_code_is_left_as_it_is() -> None:
    code = "```html\n<img src=\"a.png\"> ![x](y)\n```\n"
    assert inert_markdown(code) == code
    assert inert_markdown("Use `a<b` or ``x ` <y>``.") == "Use `a<b` or ``x ` <y>``."
    listed = "1. Do:\n   ```\n   <br>\n   ```\n"
    assert inert_markdown(listed) == listed
    # a fence that its list item ended: what follows is text again
    assert inert_markdown("- a\n  ```\n<img src=x>\n") == "- a\n  ```\n\\<img src=x>\n"
    # not a fence (a backtick in its info string), not a code span across lines
    assert inert_markdown("```a`b\n<img src=x>\n") == "```a`b\n\\<img src=x>\n"
    assert inert_markdown("`a\n# <img src=x>`") == "`a\n# \\<img src=x>`"


def test_answer_markdown_plain_form_is_the_text() -> None:
    assert repr(AnswerMarkdown("<b>x</b>")) == "<b>x</b>"
    assert AnswerMarkdown("a < b").data == "a \\< b"
