"""Each lesson's exercises can be solved as their hints say, and then every self-check prints ✅.

The lessons are run with the TODO lines replaced by the solutions below (nbclient, the practice
server's fast pacing), so a wrong hint or a self-check that can never pass fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

SOLUTIONS: dict[str, list[tuple[str, str]]] = {
    "00-setup": [
        ("model_name = None  # TODO: 改成当前配置里的模型名", "model_name = settings.model"),
        ("ttft = None  # TODO: 改成 report.ttft", "ttft = report.ttft"),
    ],
    "01-first-request": [
        ('my_message = None  # TODO: labkit.user("What is in this image?", "images/coffee.jpg")',
         'my_message = labkit.user("What is in this image?", "images/coffee.jpg")'),
        ('short_reply = None  # TODO: labkit.chat("...", max_tokens=5)',
         'short_reply = labkit.chat("Describe the image", image="images/coffee.jpg", max_tokens=5)'),
    ],
    "02-images": [
        ("target = None  # TODO", "target = labkit.llava_target_size(3000, 2000)"),
        ("rocket_tokens = None  # TODO",
         'rocket_tokens = labkit.describe_image(labkit.encode_image("images/rocket.jpg")).image_tokens'),
        ('green_reply = None  # TODO: labkit.chat("What colour is this?", image=数组)',
         'arr = np.zeros((64, 64, 3), np.uint8)\narr[..., 1] = 255\n'
         'green_reply = labkit.chat("What colour is this?", image=arr)'),
    ],
    "03-streaming-and-cleanup": [
        ("    return text  # TODO",
         '    return text[len("assistant\\n"):] if text.startswith("assistant\\n") else text'),
        ("n_deltas = None  # TODO", 'n_deltas = sum(1 for _ in labkit.stream_chat("Hello"))'),
    ],
    "04-conversations-and-parameters": [
        ("my_conv = None  # TODO",
         'my_conv = labkit.Conversation(system="Answer in Chinese.")\nmy_conv.ask("你好")\n'
         'my_conv.ask("这张图是什么颜色？", image="images/rocket.jpg")'),
        ("cut_reply = None  # TODO",
         'cut_reply = labkit.chat("Describe the image in about 100 words", image="images/rocket.jpg", max_tokens=10)'),
    ],
    "05-batch-evaluation": [
        ("s = None  # TODO", 's = labkit.score_keywords("A brown cat on a red mat", ["cat", "brown", "dog", "mat"])'),
        ("weak = None  # TODO", 'weak = sorted(n for n, r in records.items() if r.get("score", 0) < 1)'),
    ],
    "07-serve-with-vllm": [
        ("kv_bytes = None  # TODO", "kv_bytes = 2 * 60 * 8 * 128 * 2"),
        ("n_sequences = None  # TODO",
         "n_sequences = int((80 * 0.9 - 69.5) * 1e9 // (2 * 60 * 8 * 128 * 2 * 4096))"),
    ],
}


def checks_printed(nb: nbformat.NotebookNode) -> list[str]:
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            lines += [line for line in text.splitlines() if line.startswith(("✅", "❌"))]
    return lines


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_solved_exercises_pass_their_self_checks(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_PRACTICE_FAST", "1")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for todo, solution in SOLUTIONS[name]:
        cells = [c for c in nb.cells if c.cell_type == "code" and todo in c.source]
        assert len(cells) == 1, f"{name}: the exercise line {todo!r} is gone; update SOLUTIONS"
        cells[0].source = cells[0].source.replace(todo, solution)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    printed = checks_printed(nb)
    assert len(printed) == len(SOLUTIONS[name]), printed
    assert all(line.startswith("✅") for line in printed), printed


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_unsolved_exercises_explain_what_is_missing(name: str) -> None:
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    for todo, _ in SOLUTIONS[name]:
        cell = next(s for s in sources if todo in s)
        assert "check(" in cell and "TODO" in cell
