"""The lessons' exercises as data: how each self-check is called, its solutions (files under
tests/mutants/solutions/: the reference ``NN-check_x.py`` and other correct ones ``NN-check_x.altK.py``),
and the plausible wrong answers a student writes, each with the diagnosis it must get.

Used by tests/test_exercise_solutions.py (right and wrong answers, solved lessons), by the mutation
run (scripts/mutants.py: mutants of each reference solution) and by tests/vllm/test_lessons.py (the
solutions against a real engine).
"""

from __future__ import annotations

import itertools
import linecache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOLUTIONS = Path(__file__).resolve().parent / "mutants" / "solutions"


def solution_file(name: str) -> str:
    """The text of one solution file (``00-check_stopwatch`` or ``00-check_stopwatch.alt1``)."""
    return (SOLUTIONS / f"{name}.py").read_text(encoding="utf-8")


@dataclass
class Wrong:
    """A wrong answer, and what its diagnosis must say: a phrase of the English message and of the
    Chinese one (empty: only that it fails with some reason)."""

    code: str
    en: str = ""
    zh: str = ""


@dataclass
class Exercise:
    lesson: str
    check: str                      # the self-check the notebook's cell calls: ex.<check>(...)
    call: str                       # how the direct test calls it (quiet)
    wrong: list[Wrong] = field(default_factory=list)
    setup: str = ""                 # what the cells above would have defined (direct tests)

    @property
    def name(self) -> str:
        return f"{self.lesson[:2]}-{self.check}"

    @property
    def solution(self) -> str:
        return solution_file(self.name)

    @property
    def also_right(self) -> list[str]:
        return [p.read_text(encoding="utf-8") for p in sorted(SOLUTIONS.glob(f"{self.name}.alt*.py"))]


PRELUDE = """
import base64, io, json, re, time
from pathlib import Path
import httpx
import numpy as np
from PIL import Image
import labkit
from labkit.playground.modelview import anyres_plan
"""

_cells = itertools.count(1)


def run_cell(source: str, namespace: dict[str, Any]) -> Any:
    """Run ``source`` as a notebook cell would run (its text kept in ``linecache`` as IPython keeps a
    cell's, so a check can read how a value was made); returns the value of a last bare expression."""
    import ast

    filename = f"<exercise-cell-{next(_cells)}>"
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    tree = ast.parse(source, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)


def namespace(exercise: Exercise) -> dict[str, Any]:
    ns: dict[str, Any] = {}
    exec(PRELUDE + f"from labkit.exercises import lesson{exercise.lesson[:2]} as ex\n" + exercise.setup, ns)
    return ns


def run_direct(exercise: Exercise, code: str) -> Any:
    """The exercise's self-check on ``code`` (as a student would have written it in the cell), called directly."""
    ns = namespace(exercise)
    return run_cell(code.rstrip("\n") + "\n\n" + exercise.call + "\n", ns)


STOPWATCH = solution_file("00-check_stopwatch")
ASK_RAW = solution_file("01-check_raw_reader")
COMPARE_SEPARATELY = solution_file("04-check_compare_two")
SCORER = solution_file("05-check_scorer")
MY_EXPECTED = solution_file("05-check_my_keywords").split("weak =")[0]
MAX_SEQUENCES = solution_file("07-check_max_sequences")
SWEEP = solution_file("02-check_size_sweep")

# As labkit.load_results reads them: a failed item's record has an error and no answer (rocket.jpg).
FAKE_RECORDS = """
records = {"astronaut.jpg": {"status": "ok", "answer": "An astronaut in a white suit next to a flag.", "score": 1.0},
           "camera.png": {"status": "ok", "answer": "A grey photo of a man.", "score": 1.0},
           "chelsea.jpg": {"status": "ok", "answer": "A brown and orange cat.", "score": 1.0},
           "coffee.jpg": {"status": "ok", "answer": "A cup on a saucer.", "score": 1.0},
           "rocket.jpg": {"status": "error", "error_type": "APITimeoutError", "error": "Request timed out."}}
"""

PLAYGROUND = """
pg = labkit.Playground(samples=None)
"""
ASKED = PLAYGROUND + 'pg.ask("What colours are in this image?").wait()\n'   # exercise 1 done

W = Wrong

EXERCISES: list[Exercise] = [
    # ------------------------------------------------------------------ 00
    Exercise("00-setup", "check_model_name", "ex.check_model_name(model_name, quiet=True)",
             wrong=[W("model_name = None", "still None", "还是 None"),
                    W("model_name = settings.base_url", "settings.base_url is None", "base_url"),
                    W('model_name = "settings.model"', "in quotes", "引号"),
                    W('model_name = "llava-v1.6-34b"', "typed the name in", "手动输入"),
                    W("model_name = 'llava-' + 'v1.6-34b'", "", "")],
             setup="settings = labkit.load_settings()"),
    Exercise("00-setup", "check_stopwatch", "ex.check_stopwatch(time_to_first_text, quiet=True)",
             wrong=[W(STOPWATCH.replace("        if piece:\n            return", "        return"),
                      "stop at a piece that holds no text", "空"),
                    W("""
def time_to_first_text(stream):
    start = time.perf_counter()
    pieces = [p for p in stream if p]
    return time.perf_counter() - start if pieces else None
""", "too late", "太晚"),
                    W("""
def time_to_first_text(stream):
    pieces = list(stream)
    start = time.perf_counter()
    for piece in pieces:
        if piece:
            return time.perf_counter() - start
    return None
""", "read the whole stream before it started the clock", "读完了整个流"),
                    W(STOPWATCH.replace("return time.perf_counter() - start", "return time.perf_counter()"),
                      "not a clock reading", "时钟读数")]),
    # ------------------------------------------------------------------ 01
    Exercise("01-first-request", "check_message", 'ex.check_message(my_message, "images/coffee.jpg", quiet=True)',
             wrong=[
                 W("""
data = base64.b64encode(Path("images/coffee.jpg").read_bytes()).decode()
my_message = {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                          {"type": "image_url", "image_url": {"url": data}}]}
""", "not a data URL", "data URL"),
                 W("""
data = base64.b64encode(Path("images/coffee.jpg").read_bytes()).decode()
my_message = {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                          {"type": "image_url", "image_url": "data:image/jpeg;base64," + data}]}
""", "should be an object with a \"url\" key", "url"),
                 W('my_message = labkit.user("What is in this image?", "images/chelsea.jpg")', "another file",
                   "别的文件"),
                 W('my_message = {"role": "user", "content": "What is in this image? images/coffee.jpg"}',
                   "list of content parts", "列表"),
             ]),
    Exercise("01-first-request", "check_raw_reader", "ex.check_raw_reader(ask_raw, quiet=True)",
             wrong=[
                 W(ASK_RAW.replace('if data == "[DONE]":', 'if data == "[END]":'), "JSONDecodeError",
                   "JSONDecodeError"),
                 W(ASK_RAW.replace('for choice in event.get("choices", []):\n'
                                   '                text += choice.get("delta", {}).get("content") or ""',
                                   'text += event["choices"][0]["delta"].get("content") or ""'),
                   "IndexError", "IndexError"),
                 W(ASK_RAW.replace('            if "error_code" in event:', '            if False:'),  # error ignored
                   "as if it were the answer", "当作回答"),
                 W(ASK_RAW.replace('            if "error_code" in event:', '            if False:')
                   .replace('event.get("choices", [])', 'event["choices"]'),  # the course document's KeyError
                   "does not say what the backend said", "没有说出后端"),
                 W(ASK_RAW.replace('"stream": True', '"stream": False'), "did not ask for a stream", "流式"),
                 W(ASK_RAW.replace(" timeout=60,\n                      ", " "),   # httpx's default: 5 s
                   "gave up (ReadTimeout)", "放弃了"),
                 W(ASK_RAW.replace('base_url.rstrip("/") + "/chat/completions"', 'base_url + "/chat/completions"')
                   .replace("        response.raise_for_status()\n", ""), "with a double slash", "斜杠"),
                 W("""
def ask_raw(base_url, api_key, model, question):
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 64, "stream": True}
    text = ""
    with httpx.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {api_key}"}) as response:
        for raw in response.iter_raw():
            for line in raw.decode().splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    for choice in json.loads(line[6:])["choices"]:
                        text += choice["delta"].get("content") or ""
    return text
""", "", ""),                                                                              # bytes split mid-character
             ]),
    # ------------------------------------------------------------------ 02
    Exercise("02-images", "check_image_tokens", "ex.check_image_tokens(image_tokens, quiet=True)",
             wrong=[W("""
def image_tokens(path):
    with Image.open(path) as img:
        return labkit.estimate_image_tokens(*img.size)
""", "EXIF orientation tag", "EXIF"),
                    W("""
def image_tokens(path):
    with Image.open(path) as img:
        w, h = labkit.llava_target_size(*img.size)
    return w * h // (14 * 14)
""", "not its pixels or bytes", "像素"),
                    W("def image_tokens(path):\n    return 2928\n", "too high", "偏多"),
                    W("""
def image_tokens(path):
    with Image.open(path) as img:
        w, h = img.size
    tiles = -(-min(w, 1008) // 336) * -(-min(h, 1008) // 336)
    return 576 * (tiles + 1)
""", "", "")]),
    Exercise("02-images", "check_size_sweep", "ex.check_size_sweep(rows, quiet=True)",
             wrong=[W(SWEEP.replace('"tokens": info.image_tokens', '"tokens": side * side // 196'),
                      "ask labkit rather than counting pixels", "像素"),
                    W(SWEEP.replace("(224, 336, 672, 1344)", "(336, 672, 1344)"), "at least 4", "4"),
                    W(SWEEP.replace('"ttft": reply.ttft', '"ttft": None'), "ttft should be", "ttft"),
                    W(SWEEP.replace('"bytes": info.bytes', '"bytes": side * side * 3'),
                      "width × height × channels", "宽 × 高 × 通道")]),
    Exercise("02-images", "check_green", "ex.check_green(green_image, green_reply, quiet=True)",
             wrong=[W("""
green_image = np.zeros((64, 64, 3))
green_image[..., 1] = 1.0
green_reply = labkit.chat("What colour is this?", image=(green_image * 255).astype(np.uint8), max_tokens=20)
""", "uint8", "uint8"), W("""
green_image = np.zeros((64, 64, 3), np.uint8)
green_image[..., 0] = 255
green_reply = labkit.chat("What colour is this?", image=green_image, max_tokens=20)
""", "not pure green", "纯绿"), W("""
green_image = np.zeros((3, 64, 64), np.uint8)
green_image[1] = 255
green_reply = labkit.chat("What colour is this?", image=green_image.transpose(1, 2, 0), max_tokens=20).text
""", "(height, width, channels)", "（高，宽，通道）"), W("""
green_image = np.zeros((64, 64, 3), np.uint8)
green_image[..., 1] = 255
green_reply = labkit.chat("What colour is this?", image=green_image, max_tokens=3)
""", "cut off by max_tokens", "max_tokens"), W("""
green_image = np.zeros((64, 64, 3), np.uint8)
green_image[..., 1] = 255
green_reply = labkit.chat("What colour is the picture?", max_tokens=100)
""", "was the picture sent", "图片")]),
    # ------------------------------------------------------------------ 03
    Exercise("03-streaming-and-cleanup", "check_cleaner", "ex.check_cleaner(my_cleaner, quiet=True)",
             wrong=[W('def my_cleaner(pieces):\n    yield "".join(pieces).removeprefix("assistant\\n")\n',
                      "took 200 pieces before giving out any text", "200"),
                    W('def my_cleaner(pieces):\n    for piece in pieces:\n'
                      '        yield piece.replace("assistant\\n", "")\n', "became", ""),
                    W('''
def my_cleaner(pieces):
    first = True
    for piece in pieces:
        if first and piece.startswith("assistant\\n"):
            piece = piece[len("assistant\\n"):]
        first = False
        yield piece
''', "the prefix split across pieces", ""), W('''
def my_cleaner(pieces):
    text = "".join(pieces)
    parts = text.split("assistant", 1)
    yield parts[1].lstrip("\\n") if len(parts) > 1 else text
''', "contains the word assistant", "")]),
    Exercise("03-streaming-and-cleanup", "check_piece_counter", "ex.check_piece_counter(count_pieces, quiet=True)",
             wrong=[W("def count_pieces(stream):\n    return len(list(stream))\n", "empty pieces are not text", ""),
                    W("def count_pieces(stream):\n    return sum(len(piece) for piece in stream)\n", "you counted", ""),
                    W("def count_pieces(stream):\n    return len(stream)\n", "TypeError", "TypeError")]),
    # ------------------------------------------------------------------ 04
    Exercise("04-conversations-and-parameters", "check_compare_two", "ex.check_compare_two(compare_two, quiet=True)",
             wrong=[W('def compare_two(path_a, path_b, ask):\n'
                      '    return ask([labkit.user("How do these differ?", path_a, path_b)], max_tokens=200)\n',
                      "", ""),
                    W(COMPARE_SEPARATELY.replace(", max_tokens=60", "").replace(", max_tokens=80", ""),
                      "has no max_tokens", "max_tokens"),
                    W("""
def compare_two(path_a, path_b, ask):
    history = [labkit.user("Describe this image.", path_a)]
    history.append(labkit.assistant(ask(history, max_tokens=60)))
    history.append(labkit.user("How does this one differ from the first?", path_b))
    return ask(history, max_tokens=60)
""", "holds 2 images", "2"),
                    W(COMPARE_SEPARATELY.replace("max_tokens=60", "max_tokens=2000"), "would be rejected", "")]),
    Exercise("04-conversations-and-parameters", "check_room", "ex.check_room(room_for_answer, quiet=True)",
             wrong=[W("""
def room_for_answer(messages):
    text = "".join(p.get("text", "") for m in messages
                   for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}]))
    return max(0, 4096 - len(text) // 4)
""", "too many", ""), W("""
def room_for_answer(messages):
    images = sum(1 for m in messages if isinstance(m["content"], list)
                 for p in m["content"] if p["type"] == "image_url")
    texts = [{"role": m["role"], "content": [p for p in m["content"] if p["type"] == "text"]}
             if isinstance(m["content"], list) else m for m in messages]
    return max(0, 4096 - labkit.estimate_tokens(texts) - 2928 * images)
""", "too few", ""), W("def room_for_answer(messages):\n    return 4096 - labkit.estimate_tokens(messages)\n",
                       "is negative", "负")]),
    # ------------------------------------------------------------------ 05
    Exercise("05-batch-evaluation", "check_scorer", "ex.check_scorer(my_score, quiet=True)",
             wrong=[W("my_score = labkit.score_keywords\n", "a keyword inside a longer word", ""),
                    W(SCORER.replace('re.search(r"(?<![a-z0-9])" + re.escape(keyword) + r"(?![a-z0-9])", text)',
                                     're.search(r"\\b" + re.escape(keyword) + r"\\b", answer)')
                      .replace("if keyword.isascii():", "if True:"), "capital letters", ""),
                    W("def my_score(answer, keywords):\n    words = answer.lower().split()\n"
                      "    return sum(k in words for k in keywords) / len(keywords) if keywords else 1.0\n",
                      "", "")]),
    Exercise("05-batch-evaluation", "check_my_keywords",
             "ex.check_my_keywords(my_expected, weak, records, my_score, quiet=True)",
             wrong=[W(MY_EXPECTED + "weak = sorted(n for n, r in records.items() if r.get('score', 0) < 1)\n",
                      "is not the list of photos", ""),
                    W(MY_EXPECTED + "weak = [n for n, r in records.items()"
                                    " if my_score(r.get('answer', ''), my_expected[n]) < 1][::-1]\n",
                      "not in alphabetical order", "字母顺序"),
                    W("my_expected = {n: [n.split('.')[0]] for n in records}\n"
                      "weak = sorted(n for n, r in records.items()\n"
                      "              if my_score(r.get('answer', ''), my_expected[n]) < 1)\n",
                      "2–4 different keywords", "2–4"),
                    W('my_expected = {"astronaut.jpg": ["gray", "square"], "camera.png": ["gray", "black"],\n'
                      '               "chelsea.jpg": ["brown", "orange"], "coffee.jpg": ["orange", "brown"],\n'
                      '               "rocket.jpg": ["blue", "dark"]}\n'
                      "weak = sorted(n for n, r in records.items()\n"
                      "              if my_score(r.get('answer', ''), my_expected[n]) < 1)\n",
                      "describe colours, brightness or shape", "颜色")],
             setup=SCORER + FAKE_RECORDS),
    # ------------------------------------------------------------------ 06
    Exercise("06-playground", "check_answer", "ex.check_answer(answer_1, pg, quiet=True)",
             wrong=[W("answer_1 = None", "still None", "None"),
                    W('answer_1 = pg.ask("What colours are in this image?").wait().turns[-1]',
                      "not the answer's text", "answer"),
                    W('answer_1 = "The image is mostly grey."', "no turns yet", ""),
                    W('pg.ask("What colours are in this image?").wait()\nanswer_1 = pg.turns[-1].answer\n'
                      'pg.ask("How bright is it?").wait()', "not the text of the playground's last answer", ""),
                    W('answer_1 = pg.ask("How bright is it?").wait().turns[-1].answer', "does not ask about colours",
                      "颜色")],
             setup=PLAYGROUND),
    Exercise("06-playground", "check_tiles", "ex.check_tiles(tiles, quiet=True)",
             wrong=[W("tiles = None", "still None", "None"),
                    W("tiles = anyres_plan(1000, 3000)", "the whole plan", ""),
                    W("tiles = anyres_plan(1000, 3000).tiles + 1", "overview thumbnail", "缩略图"),
                    W("tiles = 9", "five grids", ""),
                    W('tiles = "3"', "whole number", "")]),
    Exercise("06-playground", "check_report", "ex.check_report(saved, pg, quiet=True)",
             wrong=[W("saved = None", "still None", "None"),
                    W('saved = "outputs/report-typed.jsonl"',
                      "asks for the report at outputs/report.jsonl", "outputs/report.jsonl"),
                    W('pg.ask("What colours are in this image?").wait()\n'
                      'Path("outputs").mkdir(exist_ok=True)\n'
                      'Path("outputs/report.jsonl").write_text(json.dumps({"id": "chelsea.jpg", "question": "What '
                      'colours?", "answer": "Brown.", "status": "ok", "score": 1.0}) + "\\n")\n'
                      'saved = Path("outputs/report.jsonl")', "lesson 05's batch answers", "第 05 课"),
                    W('pg.ask("What colours are in this image?").wait()\nsaved = pg.save("outputs/report.jsonl")\n'
                      'pg.ask("And how bright is it?").wait()', "save again after your last question", ""),
                    W("saved = 42", "should be the path", "")],
             setup=ASKED),
    # ------------------------------------------------------------------ 07
    Exercise("07-serve-with-vllm", "check_kv_bytes", "ex.check_kv_bytes(kv_bytes, quiet=True)",
             wrong=[W("kv_bytes = 60 * 8 * 128 * 2", "two tensors", "两份张量"),
                    W("kv_bytes = 2 * 60 * 8 * 128 * 16", "bits", ""),
                    W("kv_bytes = 240", "not KiB", "KiB"),
                    W("kv_bytes = 2 * 60 * 56 * 128 * 2", "is not right", "")]),
    Exercise("07-serve-with-vllm", "check_max_sequences", "ex.check_max_sequences(max_sequences, quiet=True)",
             wrong=[W(MAX_SEQUENCES.replace("/ 2**30", "/ 1e9"), "mixes units", "单位"),
                    W(MAX_SEQUENCES.replace(
                        "return max(0, int((gpu_gib * utilization - weights_gib) // per_sequence_gib))",
                        "return int((gpu_gib * utilization - weights_gib) // per_sequence_gib)"), "is negative", "负"),
                    W(MAX_SEQUENCES.replace("2 * layers", "layers"), "only one tensor per layer", "K 和 V"),
                    W(MAX_SEQUENCES.replace("gpu_gib * utilization", "gpu_gib"), "utilization", "utilization"),
                    W(MAX_SEQUENCES.replace("max(0, ", "max(1, "), "no sequence fits at all", "0"),
                    W(MAX_SEQUENCES.replace("(gpu_gib * utilization - weights_gib)",
                                            "((gpu_gib - weights_gib) * utilization)"),
                      "utilization share of what is left", "utilization")]),
]
