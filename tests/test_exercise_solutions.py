"""Every lesson's self-checks tell right from wrong.

For each exercise this file holds the solution (and other correct solutions: each real task has more
than one) and at least two plausible wrong answers a student would write. The checks are called
directly on all of them (✅ for the right ones, ❌ for the wrong ones), and each lesson is executed
with its exercise cells filled in with the solutions (nbclient, the practice server's fast pacing):
every self-check then prints ✅. An exercise cell run after a kernel restart names the step to run
first. tests/vllm/test_lessons.py runs the solved lessons against a real vLLM engine too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ANSWER_START = "# ↓ 你的答案"  # the first line of the student's part of an exercise cell


@dataclass
class Exercise:
    lesson: str
    check: str                      # the self-check the notebook's cell calls: ex.<check>(...)
    call: str                       # how the direct test calls it (quiet)
    solution: str
    also_right: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    setup: str = ""                 # what the cells above would have defined (direct tests)


PRELUDE = """
import base64, io, json, re, time
from pathlib import Path
import httpx
import numpy as np
from PIL import Image
import labkit
"""

STOPWATCH = """
def time_to_first_text(stream):
    start = time.perf_counter()
    for piece in stream:
        if piece:
            return time.perf_counter() - start
    return None
"""

ASK_RAW = """
def ask_raw(base_url, api_key, model, question):
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 64, "stream": True}
    text = ""
    with httpx.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {api_key}"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                break
            for choice in json.loads(data).get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
    return text
"""

CLEANER = '''
PREFIX = "assistant\\n"

def my_cleaner(pieces):
    held, deciding = "", True
    for piece in pieces:
        if not deciding:
            if piece:
                yield piece
            continue
        held += piece
        if held.startswith(PREFIX):
            deciding = False
            if held[len(PREFIX):]:
                yield held[len(PREFIX):]
        elif not PREFIX.startswith(held):
            deciding = False
            yield held
    if deciding and held:
        yield held
'''

COMPARE_SEPARATELY = """
def compare_two(path_a, path_b, ask):
    a = ask([labkit.user("Describe this image in one sentence.", path_a)], max_tokens=60)
    b = ask([labkit.user("Describe this image in one sentence.", path_b)], max_tokens=60)
    return ask([labkit.user(f"Image A: {a}\\nImage B: {b}\\nHow do the two images differ?")], max_tokens=80)
"""

COMPARE_SIDE_BY_SIDE = """
def compare_two(path_a, path_b, ask):
    a, b = Image.open(path_a).convert("RGB"), Image.open(path_b).convert("RGB")
    a = a.resize((round(a.width * 336 / a.height), 336))
    b = b.resize((round(b.width * 336 / b.height), 336))
    both = Image.new("RGB", (a.width + b.width, 336), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    return ask([labkit.user("Left and right: how do these two pictures differ?", both)], max_tokens=150)
"""

SCORER = """
def my_score(answer, keywords):
    if not keywords:
        return 1.0
    text = answer.lower()
    found = 0
    for keyword in keywords:
        keyword = keyword.lower()
        if keyword.isascii():
            found += bool(re.search(r"(?<![a-z0-9])" + re.escape(keyword) + r"(?![a-z0-9])", text))
        else:
            found += keyword in text
    return found / len(keywords)
"""

MY_EXPECTED = """
my_expected = {"astronaut.jpg": ["astronaut", "flag"], "camera.png": ["camera", "man"],
               "chelsea.jpg": ["cat", "orange"], "coffee.jpg": ["coffee", "cup"], "rocket.jpg": ["rocket", "launch"]}
"""

FAKE_RECORDS = """
records = {"astronaut.jpg": {"answer": "An astronaut in a white suit next to a flag.", "score": 1.0},
           "camera.png": {"answer": "A grey photo of a man.", "score": 1.0},
           "chelsea.jpg": {"answer": "A brown and orange cat.", "score": 1.0},
           "coffee.jpg": {"answer": "A cup on a saucer.", "score": 1.0},
           "rocket.jpg": {"answer": "A dark blue sky.", "score": 1.0}}
"""

MAX_SEQUENCES = """
def max_sequences(gpu_gib, params_billion, layers, kv_heads, head_dim, context=4096, utilization=0.9):
    weights_gib = params_billion * 1e9 * 2 / 2**30
    per_sequence_gib = 2 * layers * kv_heads * head_dim * 2 * context / 2**30
    return max(0, int((gpu_gib * utilization - weights_gib) // per_sequence_gib))
"""

SWEEP = """
rows = []
for side in (224, 336, 672, 1344):
    picture = Image.fromarray(np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8))
    info = labkit.describe_image(labkit.encode_image(picture))
    reply = labkit.chat("What colour is this?", image=picture, max_tokens=16, display=False)
    rows.append({"width": side, "height": side, "bytes": info.bytes, "tokens": info.image_tokens, "ttft": reply.ttft})
"""

EXERCISES: list[Exercise] = [
    # ------------------------------------------------------------------ 00
    Exercise("00-setup", "check_model_name", "ex.check_model_name(model_name, quiet=True)",
             "model_name = settings.model",
             also_right=["model_name = labkit.load_settings().model"],
             wrong=["model_name = None", "model_name = settings.base_url", 'model_name = "settings.model"'],
             setup="settings = labkit.load_settings()"),
    Exercise("00-setup", "check_stopwatch", "ex.check_stopwatch(time_to_first_text, quiet=True)", STOPWATCH,
             also_right=["""
def time_to_first_text(stream):
    t0 = time.monotonic()
    first = next((piece for piece in stream if piece != ""), None)
    return None if first is None else time.monotonic() - t0
"""],
             wrong=[# stops at an empty piece
                    STOPWATCH.replace("        if piece:\n            return", "        return"),
                    """
def time_to_first_text(stream):
    start = time.perf_counter()
    pieces = [p for p in stream if p]
    return time.perf_counter() - start if pieces else None
""",                                                                                   # the whole stream
                    STOPWATCH.replace("return time.perf_counter() - start", "return time.perf_counter()")]),
    # ------------------------------------------------------------------ 01
    Exercise("01-first-request", "check_message", 'ex.check_message(my_message, "images/coffee.jpg", quiet=True)',
             """
data = base64.b64encode(Path("images/coffee.jpg").read_bytes()).decode()
my_message = {"role": "user", "content": [
    {"type": "text", "text": "What is in this image?"},
    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + data}},
]}
""",
             also_right=['my_message = labkit.user("这张图里有什么？", "images/coffee.jpg")'],
             wrong=[
                 """
data = base64.b64encode(Path("images/coffee.jpg").read_bytes()).decode()
my_message = {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                          {"type": "image_url", "image_url": {"url": data}}]}
""",
                 """
data = base64.b64encode(Path("images/coffee.jpg").read_bytes()).decode()
my_message = {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                          {"type": "image_url", "image_url": "data:image/jpeg;base64," + data}]}
""",
                 'my_message = labkit.user("What is in this image?", "images/chelsea.jpg")',
                 'my_message = {"role": "user", "content": "What is in this image? images/coffee.jpg"}',
             ]),
    Exercise("01-first-request", "check_raw_reader", "ex.check_raw_reader(ask_raw, quiet=True)", ASK_RAW,
             also_right=["""
def ask_raw(base_url, api_key, model, question):
    body = {"model": model, "stream": True, "max_tokens": 100,
            "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}]}
    pieces = []
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{base_url}/chat/completions", json=body,
                           headers={"Authorization": "Bearer " + api_key}) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = json.loads(line[6:])
                    if event["choices"]:
                        pieces.append(event["choices"][0]["delta"].get("content", ""))
    return labkit.strip_role_prefix("".join(pieces))
"""],
             wrong=[
                 ASK_RAW.replace('if data == "[DONE]":', 'if data == "[END]":'),       # [DONE] is no JSON
                 ASK_RAW.replace('for choice in json.loads(data).get("choices", []):\n'
                                 '                text += choice.get("delta", {}).get("content") or ""',
                                 'text += json.loads(data)["choices"][0]["delta"].get("content") or ""'),  # usage event
                 ASK_RAW.replace('"stream": True', '"stream": False'),
                 """
def ask_raw(base_url, api_key, model, question):
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 64, "stream": True}
    text = ""
    with httpx.stream("POST", base_url + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {api_key}"}) as response:
        for raw in response.iter_raw():
            for line in raw.decode().splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    for choice in json.loads(line[6:])["choices"]:
                        text += choice["delta"].get("content") or ""
    return text
""",                                                                                       # bytes split mid-character
             ]),
    # ------------------------------------------------------------------ 02
    Exercise("02-images", "check_image_tokens", "ex.check_image_tokens(image_tokens, quiet=True)", """
def image_tokens(path):
    return labkit.describe_image(labkit.encode_image(path)).image_tokens
""",
             also_right=["""
def image_tokens(path):
    with Image.open(path) as img:
        return labkit.estimate_image_tokens(*img.size)
"""],
             wrong=["""
def image_tokens(path):
    with Image.open(path) as img:
        w, h = labkit.llava_target_size(*img.size)
    return w * h // (14 * 14)
""", "def image_tokens(path):\n    return 2928\n", """
def image_tokens(path):
    with Image.open(path) as img:
        w, h = img.size
    tiles = -(-min(w, 1008) // 336) * -(-min(h, 1008) // 336)
    return 576 * (tiles + 1)
"""]),
    Exercise("02-images", "check_size_sweep", "ex.check_size_sweep(rows, quiet=True)", SWEEP,
             also_right=[SWEEP.replace("(224, 336, 672, 1344)", "(100, 300, 500, 800, 1200)")
                              .replace("np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)",
                                       "np.full((side, side, 3), 128, np.uint8)")
                              .replace('"bytes": info.bytes', '"bytes": len(labkit.encode_image(picture))')],
             wrong=[SWEEP.replace('"tokens": info.image_tokens', '"tokens": side * side // 196'),
                    SWEEP.replace("(224, 336, 672, 1344)", "(336, 672, 1344)"),
                    SWEEP.replace('"ttft": reply.ttft', '"ttft": None')]),
    Exercise("02-images", "check_green", "ex.check_green(green_image, green_reply, quiet=True)", """
green_image = np.zeros((64, 64, 3), np.uint8)
green_image[..., 1] = 255
green_reply = labkit.chat("它是什么颜色？", image=green_image, max_tokens=30)
""",
             also_right=["""
green_image = np.full((64, 64, 3), (0, 255, 0), dtype=np.uint8)
green_reply = labkit.chat("What colour is this?", image=green_image, max_tokens=20, display=False)
"""],
             wrong=["""
green_image = np.zeros((64, 64, 3))
green_image[..., 1] = 1.0
green_reply = labkit.chat("What colour is this?", image=(green_image * 255).astype(np.uint8), max_tokens=20)
""", """
green_image = np.zeros((64, 64, 3), np.uint8)
green_image[..., 0] = 255
green_reply = labkit.chat("What colour is this?", image=green_image, max_tokens=20)
""", """
green_image = np.zeros((3, 64, 64), np.uint8)
green_image[1] = 255
green_reply = labkit.chat("What colour is this?", image=green_image.transpose(1, 2, 0), max_tokens=20).text
"""]),
    # ------------------------------------------------------------------ 03
    Exercise("03-streaming-and-cleanup", "check_cleaner", "ex.check_cleaner(my_cleaner, quiet=True)", CLEANER,
             also_right=['''
def my_cleaner(pieces):
    prefix, buffer, it = "assistant\\n", "", iter(pieces)
    for piece in it:
        buffer += piece
        if len(buffer) >= len(prefix) or not prefix.startswith(buffer):
            break
    yield buffer[len(prefix):] if buffer.startswith(prefix) else buffer
    for piece in it:
        yield piece
'''],
             wrong=['def my_cleaner(pieces):\n    yield "".join(pieces).removeprefix("assistant\\n")\n',
                    'def my_cleaner(pieces):\n    for piece in pieces:\n'
                    '        yield piece.replace("assistant\\n", "")\n',
                    '''
def my_cleaner(pieces):
    first = True
    for piece in pieces:
        if first and piece.startswith("assistant\\n"):
            piece = piece[len("assistant\\n"):]
        first = False
        yield piece
''', '''
def my_cleaner(pieces):
    text = "".join(pieces)
    parts = text.split("assistant", 1)
    yield parts[1].lstrip("\\n") if len(parts) > 1 else text
''']),
    Exercise("03-streaming-and-cleanup", "check_piece_counter", "ex.check_piece_counter(count_pieces, quiet=True)",
             "def count_pieces(stream):\n    return sum(1 for piece in stream if piece)\n",
             also_right=["def count_pieces(stream):\n    n = 0\n    for piece in stream:\n        if piece != '':\n"
                         "            n += 1\n    return n\n"],
             wrong=["def count_pieces(stream):\n    return len(list(stream))\n",
                    "def count_pieces(stream):\n    return sum(len(piece) for piece in stream)\n",
                    "def count_pieces(stream):\n    return len(stream)\n"]),
    # ------------------------------------------------------------------ 04
    Exercise("04-conversations-and-parameters", "check_compare_two", "ex.check_compare_two(compare_two, quiet=True)",
             COMPARE_SEPARATELY, also_right=[COMPARE_SIDE_BY_SIDE],
             wrong=['def compare_two(path_a, path_b, ask):\n'
                    '    return ask([labkit.user("How do these differ?", path_a, path_b)], max_tokens=200)\n',
                    COMPARE_SEPARATELY.replace(", max_tokens=60", "").replace(", max_tokens=80", ""),
                    """
def compare_two(path_a, path_b, ask):
    history = [labkit.user("Describe this image.", path_a)]
    history.append(labkit.assistant(ask(history, max_tokens=60)))
    history.append(labkit.user("How does this one differ from the first?", path_b))
    return ask(history, max_tokens=60)
""",
                    COMPARE_SEPARATELY.replace("max_tokens=60", "max_tokens=2000")]),
    Exercise("04-conversations-and-parameters", "check_room", "ex.check_room(room_for_answer, quiet=True)",
             "def room_for_answer(messages):\n    return max(0, 4096 - labkit.estimate_tokens(messages))\n",
             also_right=["""
def room_for_answer(messages):
    used = 0
    for m in messages:
        parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        for p in parts:
            if p["type"] == "text":
                used += labkit.estimate_tokens([{"role": "user", "content": p["text"]}])
            else:
                used += labkit.describe_image(p["image_url"]["url"]).image_tokens
    return max(0, 4096 - used)
"""],
             wrong=["""
def room_for_answer(messages):
    text = "".join(p.get("text", "") for m in messages
                   for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
    return max(0, 4096 - len(text) // 4)
""", """
def room_for_answer(messages):
    images = sum(1 for m in messages if isinstance(m["content"], list)
                 for p in m["content"] if p["type"] == "image_url")
    texts = [{"role": m["role"], "content": [p for p in m["content"] if p["type"] == "text"]}
             if isinstance(m["content"], list) else m for m in messages]
    return max(0, 4096 - labkit.estimate_tokens(texts) - 2928 * images)
""", "def room_for_answer(messages):\n    return 4096 - labkit.estimate_tokens(messages)\n"]),
    # ------------------------------------------------------------------ 05
    Exercise("05-batch-evaluation", "check_scorer", "ex.check_scorer(my_score, quiet=True)", SCORER,
             also_right=["""
def my_score(answer, keywords):
    words = re.findall(r"[a-z0-9]+", answer.lower())
    joined = " " + " ".join(words) + " "
    hits = [(" " + k.lower() + " " in joined) if k.isascii() else (k in answer) for k in keywords]
    return sum(hits) / len(hits) if hits else 1.0
"""],
             wrong=["my_score = labkit.score_keywords\n",
                    SCORER.replace('re.search(r"(?<![a-z0-9])" + re.escape(keyword) + r"(?![a-z0-9])", text)',
                                   're.search(r"\\b" + re.escape(keyword) + r"\\b", answer)')
                          .replace("if keyword.isascii():", "if True:"),
                    "def my_score(answer, keywords):\n    words = answer.lower().split()\n"
                    "    return sum(k in words for k in keywords) / len(keywords) if keywords else 1.0\n"]),
    Exercise("05-batch-evaluation", "check_my_keywords",
             "ex.check_my_keywords(my_expected, weak, records, my_score, quiet=True)",
             MY_EXPECTED + "weak = sorted(n for n, r in records.items()"
                           " if my_score(r.get('answer', ''), my_expected[n]) < 1)\n",
             also_right=[MY_EXPECTED + "weak = []\nfor name in sorted(records):\n"
                         "    if my_score(records[name].get('answer', ''), my_expected[name]) < 1:\n"
                         "        weak.append(name)\n"],
             wrong=[MY_EXPECTED + "weak = sorted(n for n, r in records.items() if r['score'] < 1)\n",
                    MY_EXPECTED + "weak = [n for n, r in records.items()"
                                  " if my_score(r['answer'], my_expected[n]) < 1][::-1]\n",
                    "my_expected = {n: [n.split('.')[0]] for n in records}\n"
                    "weak = sorted(n for n, r in records.items() if my_score(r['answer'], my_expected[n]) < 1)\n"],
             setup=SCORER + FAKE_RECORDS),
    # ------------------------------------------------------------------ 07
    Exercise("07-serve-with-vllm", "check_kv_bytes", "ex.check_kv_bytes(kv_bytes, quiet=True)",
             "kv_bytes = 2 * 60 * 8 * 128 * 2",
             also_right=["layers, kv_heads, head_dim = 60, 8, 128\nkv_bytes = 2 * layers * kv_heads * head_dim * 2"],
             wrong=["kv_bytes = 60 * 8 * 128 * 2", "kv_bytes = 2 * 60 * 8 * 128 * 16", "kv_bytes = 240",
                    "kv_bytes = 2 * 60 * 56 * 128 * 2"]),
    Exercise("07-serve-with-vllm", "check_max_sequences", "ex.check_max_sequences(max_sequences, quiet=True)",
             MAX_SEQUENCES,
             also_right=["""
def max_sequences(gpu_gib, params_billion, layers, kv_heads, head_dim, context=4096, utilization=0.9):
    free_bytes = gpu_gib * 2**30 * utilization - params_billion * 1e9 * 2
    return max(0, int(free_bytes // (2 * layers * kv_heads * head_dim * 2 * context)))
"""],
             wrong=[MAX_SEQUENCES.replace("/ 2**30", "/ 1e9"),
                    MAX_SEQUENCES.replace(
                        "return max(0, int((gpu_gib * utilization - weights_gib) // per_sequence_gib))",
                        "return int((gpu_gib * utilization - weights_gib) // per_sequence_gib)"),
                    MAX_SEQUENCES.replace("2 * layers", "layers")]),
]

LESSONS = sorted({e.lesson for e in EXERCISES})


def _ids(e: Exercise) -> str:
    return f"{e.lesson[:2]}-{e.check}"


def _namespace(exercise: Exercise) -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(PRELUDE + f"from labkit.exercises import lesson{exercise.lesson[:2]} as ex\n" + exercise.setup, ns)
    return ns


def run_direct(exercise: Exercise, code: str) -> Any:
    """The exercise's self-check on ``code`` (as a student would have written it), called directly."""
    ns = _namespace(exercise)
    exec(code, ns)
    return eval(exercise.call, ns)


@pytest.fixture
def in_notebooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(NOTEBOOKS)
    monkeypatch.setenv("LABKIT_PRACTICE_FAST", "1")
    monkeypatch.setenv("LABKIT_QUIET", "1")


@pytest.mark.parametrize("exercise", EXERCISES, ids=_ids)
def test_right_answers_pass(exercise: Exercise, in_notebooks: None) -> None:
    for code in [exercise.solution, *exercise.also_right]:
        verdict = run_direct(exercise, code)
        assert verdict.ok, (code, verdict.problems)


@pytest.mark.parametrize("exercise", EXERCISES, ids=_ids)
def test_wrong_answers_fail_with_a_reason(exercise: Exercise, in_notebooks: None) -> None:
    assert len(exercise.wrong) >= 2
    for code in exercise.wrong:
        verdict = run_direct(exercise, code)
        assert not verdict.ok, f"a wrong answer passed {exercise.check}:\n{code}"
        assert all(isinstance(p, str) and p.strip() for p in verdict.problems)


def exercise_cells(nb: nbformat.NotebookNode, check: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and f"ex.{check}(" in c.source]


def fill_in(nb: nbformat.NotebookNode, exercise: Exercise, code: str) -> None:
    """Replace the student's part of the exercise's cell (from ANSWER_START to the check) with ``code``."""
    cells = exercise_cells(nb, exercise.check)
    assert len(cells) == 1, f"{exercise.lesson}: one cell should call ex.{exercise.check}(…)"
    lines = cells[0].source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(ANSWER_START))
    end = next(i for i, line in enumerate(lines) if line.startswith(f"ex.{exercise.check}("))
    cells[0].source = "\n".join(lines[:start] + [code.strip("\n"), ""] + lines[end:])


def solved(lesson: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    for exercise in EXERCISES:
        if exercise.lesson == lesson:
            fill_in(nb, exercise, exercise.solution)
    return nb


def verdicts_printed(nb: nbformat.NotebookNode) -> list[str]:
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            lines += [line for line in output.get("text", "").splitlines() if line.startswith(("✅", "❌"))]
    return lines


def execute(nb: nbformat.NotebookNode, env: dict[str, str] | None = None, timeout: int = 120) -> None:
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def assert_all_passed(lesson: str, nb: nbformat.NotebookNode) -> None:
    printed = verdicts_printed(nb)
    expected = sum(1 for e in EXERCISES if e.lesson == lesson)
    assert len(printed) == expected and all(line.startswith("✅") for line in printed), printed


@pytest.mark.parametrize("lesson", LESSONS)
def test_solved_lesson_prints_only_passes(lesson: str, tmp_path: Path) -> None:
    nb = solved(lesson)
    execute(nb, {"LABKIT_PRACTICE_FAST": "1"})
    assert_all_passed(lesson, nb)


@pytest.mark.parametrize("lesson", LESSONS)
def test_unsolved_cells_hold_no_answer(lesson: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    for exercise in (e for e in EXERCISES if e.lesson == lesson):
        (cell,) = exercise_cells(nb, exercise.check)
        assert ANSWER_START in cell.source
        student_part = cell.source.split(ANSWER_START, 1)[1].split(f"ex.{exercise.check}(", 1)[0]
        for line in exercise.solution.strip().splitlines():
            if len(line.strip()) > 12 and not line.lstrip().startswith(("def ", "import ", "from ")):
                assert line.strip() not in student_part, f"{lesson}: the answer is in the cell: {line}"


@pytest.mark.parametrize(("lesson", "check", "step"), [("00-setup", "check_model_name", "第 2 步"),
                                                      ("05-batch-evaluation", "check_my_keywords", "第 4 步")])
def test_an_exercise_cell_after_a_restart_names_the_step_to_run_first(lesson: str, check: str, step: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{lesson}.ipynb", as_version=4)
    nb.cells = exercise_cells(nb, check)          # a fresh kernel: nothing above this cell has run
    with pytest.raises(CellExecutionError) as info:
        execute(nb, {"LABKIT_PRACTICE_FAST": "1"}, timeout=60)
    assert "StepNotRun" in str(info.value) and step in str(info.value), str(info.value)[-800:]
