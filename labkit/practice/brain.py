"""The practice "model": a deterministic answer computed from what was sent.

It reads the image (size, orientation, colours, brightness, kind), shapes the reply by the question
(colour, size, brightness, kind, a requested length) and the system prompt (a language, brevity),
answers in Chinese when asked in Chinese, and samples its wording as the request's temperature,
top_p and seed say: ``temperature=0`` or a seed gives the same answer to the same request.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import secrets
from dataclasses import dataclass
from typing import Any

from .vision import ImageFacts

__all__ = ["Prompt", "compose_answer", "split_tokens", "count_text_tokens", "is_chinese", "request_fingerprint"]

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef"
_TOKEN_RE = re.compile(rf"\s*(?:[{_CJK}]|[^\s{_CJK}]+)|\s+$")
_CJK_RE = re.compile(f"[{_CJK}]")
# Where one piece ends and the next begins: before whitespace that follows a non-space, or after a
# Chinese character (each is a piece of its own).
_CUT_RE = re.compile(rf"(?<=\S)(?=\s)|(?<=[{_CJK}])")
_CHUNK = 1 << 16

ZH_COLOURS = {
    "red": "红色", "orange": "橙色", "yellow": "黄色", "olive": "橄榄色", "green": "绿色", "cyan": "青色",
    "blue": "蓝色", "purple": "紫色", "pink": "粉色", "brown": "棕色", "black": "黑色", "gray": "灰色",
    "white": "白色",
}
ZH_KIND = {"photo": "照片", "drawing": "图画", "text": "文字图片"}
ZH_ORIENTATION = {"landscape": "横向", "portrait": "纵向", "square": "方形"}
ZH_TONE = {"dark": "偏暗", "bright": "明亮", "medium": "亮度适中"}
EN_TONE = {"dark": "fairly dark", "bright": "bright", "medium": "of medium brightness"}
EN_KIND = {"photo": "photograph", "drawing": "drawing", "text": "picture of text"}
REGIONS_EN = ("top-left", "top", "top-right", "left", "centre", "right", "bottom-left", "bottom", "bottom-right")
REGIONS_ZH = ("左上角", "上方", "右上角", "左侧", "中央", "右侧", "左下角", "下方", "右下角")


@dataclass(frozen=True)
class Prompt:
    """What the model is asked: the last user text, the images, the turn number, the system text."""

    question: str
    images: tuple[ImageFacts, ...]
    turn: int
    system: str
    fingerprint: str  # hash of the whole request, for deterministic variation
    temperature: float = 0.0  # 0: greedy, the same answer every time
    top_p: float = 1.0
    seeded: bool = False  # a seed was sent: sampled answers repeat exactly


def is_chinese(text: str) -> bool:
    """Whether the question contains Chinese characters.

    Example:
        >>> is_chinese("这是什么？"), is_chinese("What is this?")
        (True, False)
    """
    return bool(_CJK_RE.search(text))


def split_tokens(text: str) -> list[str]:
    """Split an answer into the pieces streamed one per event (a word with its leading space, or one
    Chinese character).

    Example:
        >>> split_tokens("The cat 很可爱")
        ['The', ' cat', ' 很', '可', '爱']
    """
    return [t for t in _TOKEN_RE.findall(text) if t]


def count_text_tokens(text: str) -> int:
    """A token estimate for prompt text, consistent with :func:`split_tokens`.

    Example:
        >>> count_text_tokens("Describe the image to me")
        5
    """
    if len(text) <= _CHUNK:
        return len(split_tokens(text))
    # A long text is counted in slices cut where a piece ends, so that no list of millions of pieces
    # is built and other threads (the event loop) run between slices.
    count, start, end = 0, 0, len(text)
    while start < end:
        cut = _CUT_RE.search(text, start + _CHUNK)
        stop = cut.start() if cut else end
        count += len(_TOKEN_RE.findall(text, start, stop))
        start = stop
    return count


def request_fingerprint(body: dict[str, Any], texts: list[tuple[str, list[str]]], image_digests: list[str]) -> str:
    """A stable hash of what shapes the answer: parameters, message texts and the images' digests
    (hashing digests rather than the base64 text keeps this cheap for large images; long texts are
    hashed piece by piece, never copied whole)."""
    h = hashlib.sha256()
    h.update(json.dumps([body.get(k) for k in ("model", "temperature", "top_p", "max_tokens", "seed")],
                        ensure_ascii=False).encode())
    for role, parts in texts:
        h.update(b"\x00" + role.encode())
        for part in parts:
            h.update(b"\x01")
            for i in range(0, len(part), 1 << 20):
                h.update(part[i:i + (1 << 20)].encode("utf-8", "surrogatepass"))
    for digest in image_digests:
        h.update(b"\x02" + digest.encode())
    return h.hexdigest()


_LENGTH_EN = re.compile(r"(\d{1,5})\s*(?:words?|tokens?)", re.I)
_LENGTH_ZH = re.compile(r"(\d{1,5})\s*(?:个?字|个?词|个?token)")


def _target_length(question: str) -> int | None:
    m = _LENGTH_EN.search(question) or _LENGTH_ZH.search(question)
    return min(int(m.group(1)), 8000) if m else None


class _Sampler:
    """Picks among phrasings ordered from most to least likely, as sampling picks tokens.

    ``temperature=0`` is greedy (always the likeliest); otherwise option ``i`` has the logit ``-1.5·i``,
    softened by the temperature and cut by ``top_p`` (the smallest set of likeliest options whose
    probabilities reach top_p). A ``seed`` (part of the fingerprint) repeats a sampled answer exactly;
    without one each request draws afresh.
    """

    def __init__(self, prompt: Prompt) -> None:
        self.temperature = prompt.temperature
        self.top_p = prompt.top_p
        seed = prompt.fingerprint if prompt.seeded else secrets.token_hex(16)
        self.rng = random.Random(seed)

    def choose(self, options: list[str]) -> str:
        if self.temperature <= 0 or len(options) == 1:
            return options[0]
        weights = [math.exp(-1.5 * i / self.temperature) for i in range(len(options))]
        total = sum(weights)
        kept, mass = [], 0.0
        for option, weight in zip(options, weights, strict=True):
            kept.append((option, weight))
            mass += weight / total
            if mass >= self.top_p - 1e-9:
                break
        roll = self.rng.random() * sum(w for _, w in kept)
        for option, weight in kept:
            roll -= weight
            if roll <= 0:
                return option
        return kept[-1][0]


_BRIEF = re.compile(r"\b(?:brief(?:ly)?|concise(?:ly)?|short(?:ly)?|succinct(?:ly)?|one sentence|a sentence|"
                    r"few words|terse(?:ly)?|tl;?dr)\b|简短|简洁|简要|一句话|简单回答|简明", re.I)
_WANTS_ZH = re.compile(r"\bin (?:simplified |traditional )?(?:chinese|mandarin)\b|中文|汉语|普通话|简体", re.I)
_WANTS_EN = re.compile(r"\bin english\b|英文|英语", re.I)


def _topics(question: str) -> set[str]:
    topics = set()
    if re.search(r"colou?r|颜色|色彩|什么色", question, re.I):
        topics.add("colour")
    if re.search(r"\bsize\b|resolution|pixels?|how (big|large)|dimension|尺寸|大小|分辨率|像素", question, re.I):
        topics.add("size")
    if re.search(r"bright|dark|light|亮|暗", question, re.I):
        topics.add("tone")
    if re.search(r"photo|drawing|kind|type|text|照片|图画|类型|文字", question, re.I):
        topics.add("kind")
    return topics


def _percent(share: float) -> int:
    return max(1, round(share * 100))


def _join_en(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_ROWS = ((0, 1, 2), (3, 4, 5), (6, 7, 8))
_COLS = ((0, 3, 6), (1, 4, 7), (2, 5, 8))
_ROW_EN, _COL_EN = ("top row", "middle row", "bottom row"), ("left side", "centre column", "right side")
_ROW_ZH, _COL_ZH = ("上面一排", "中间一排", "下面一排"), ("左边一列", "中间一列", "右边一列")
_CELL_EN = ("top-left corner", "top edge", "top-right corner", "left edge", "centre", "right edge",
            "bottom-left corner", "bottom edge", "bottom-right corner")


def _areas(cells: set[int], chinese: bool) -> list[str]:
    """Name a set of the nine regions as whole rows, whole columns, then single places."""
    names, left = [], set(cells)
    for group, label in ((_ROWS, _ROW_ZH if chinese else _ROW_EN), (_COLS, _COL_ZH if chinese else _COL_EN)):
        for line, name in zip(group, label, strict=True):
            if set(line) <= left and len(cells) < 9:
                names.append(name)
                left -= set(line)
    names += [(REGIONS_ZH if chinese else _CELL_EN)[i] for i in sorted(left)]
    return names


def _layout(f: ImageFacts, chinese: bool, pick: _Sampler) -> str:
    """Where each colour is, grouped ("Blue fills the top row, while the bottom-left corner is white")."""
    by_colour: dict[str, set[int]] = {}
    for i, name in enumerate(f.regions):
        by_colour.setdefault(name, set()).add(i)
    ordered = sorted(by_colour.items(), key=lambda kv: -len(kv[1]))
    main, main_cells = ordered[0]
    if len(ordered) == 1:
        return (f"整张图从上到下都是{ZH_COLOURS[main]}。" if chinese
                else pick.choose([f"It is {main} all over, from edge to edge.", f"The whole frame is {main}."]))
    others = ordered[1:3]
    if chinese:
        rest = "，".join(f"{'、'.join(_areas(cells, True))}是{ZH_COLOURS[name]}" for name, cells in others)
        where = "画面大部分" if len(main_cells) >= 7 else "、".join(_areas(main_cells, True))
        return f"{where}是{ZH_COLOURS[main]}，{rest}。"

    def told(cells: set[int], name: str) -> str:
        areas = _areas(cells, False)
        return f"the {_join_en(areas)} {'is' if len(areas) == 1 else 'are'} {name}"

    rest = "; ".join(told(cells, name) for name, cells in others)
    if len(main_cells) >= 7:
        return pick.choose([f"{main.capitalize()} covers most of the frame, while {rest}.",
                            f"Most of the frame is {main}; {rest}.",
                            f"Apart from the {main} background, {rest}."])
    first = told(main_cells, main)
    return pick.choose([f"{first[0].upper() + first[1:]}, while {rest}.", f"In the layout, {first} and {rest}."])


def _sentences_en(f: ImageFacts, topics: set[str], pick: _Sampler) -> list[str]:
    size = f"{f.width}×{f.height} pixels ({f.orientation})"
    names = [n for n, _ in f.colours]
    main = f"{names[0]} (about {_percent(f.colours[0][1])}% of it)"
    tail = f", with {_join_en(names[1:])}" if len(names) > 1 else ""
    kind = EN_KIND[f.kind]
    tone, level = EN_TONE[f.tone], round(f.brightness)
    sentences = {
        "kind": pick.choose([f"The image looks like a {kind}.", f"It appears to be a {kind}.",
                             f"This looks like a {kind} to me."]),
        "size": pick.choose([f"It is {size}.", f"It measures {size}.", f"Its size is {size}."]),
        "colour": pick.choose([f"Its main colour is {main}{tail}.", f"Most of it is {main}{tail}.",
                               f"The dominant colour is {main}{tail}."]),
        "tone": pick.choose([f"Overall this {names[0]} image is {tone} (mean brightness {level} of 255).",
                             f"The mostly {names[0]} image is {tone} overall, with a mean brightness of {level} "
                             "out of 255.",
                             f"Its lighting is {tone}: the mean brightness of this {names[0]} image is {level} "
                             "of 255."]),
    }
    opener = pick.choose([f"This is a {kind} of {size}.", f"I see a {kind}, {size}.",
                          f"The picture is a {kind} of {size}.", f"You sent a {kind} of {size}."])
    return _arrange(sentences, opener, topics)


def _sentences_zh(f: ImageFacts, topics: set[str], pick: _Sampler) -> list[str]:
    size = f"{f.width}×{f.height}像素（{ZH_ORIENTATION[f.orientation]}）"
    names = [ZH_COLOURS[n] for n, _ in f.colours]
    main = f"{names[0]}（约占{_percent(f.colours[0][1])}%）"
    tail = f"，其次是{'、'.join(names[1:])}" if len(names) > 1 else ""
    kind = ZH_KIND[f.kind]
    tone, level = ZH_TONE[f.tone], round(f.brightness)
    sentences = {
        "kind": pick.choose([f"这张图看起来是一张{kind}。", f"这应该是一张{kind}。"]),
        "size": pick.choose([f"它的尺寸是{size}。", f"图片大小为{size}。"]),
        "colour": pick.choose([f"主要颜色是{main}{tail}。", f"画面以{main}为主{tail}。"]),
        "tone": pick.choose([f"这张以{names[0]}为主的图整体{tone}（平均亮度{level}/255）。",
                             f"以{names[0]}为主的画面整体{tone}，平均亮度为{level}/255。"]),
    }
    opener = pick.choose([f"这是一张{size}的{kind}。", f"我看到一张{kind}，{size}。",
                          f"你发来的是一张{size}的{kind}。"])
    return _arrange(sentences, opener, topics)


def _arrange(sentences: dict[str, str], opener: str, topics: set[str]) -> list[str]:
    """What was asked about first, then the opener (unless size or kind was asked), then the rest."""
    ordered = [sentences[t] for t in ("colour", "size", "tone", "kind") if t in topics]
    rest = [sentences[t] for t in ("colour", "tone") if t not in topics]
    return ordered + ([opener] if "size" not in topics and "kind" not in topics else []) + rest


def _more_en(f: ImageFacts, pick: _Sampler, round_no: int) -> list[str]:
    """Further sentences for a requested length: each round says something else, in other words."""
    names = [n for n, _ in f.colours]
    shares = [f"{n} about {_percent(s)}%" for n, s in f.colours]
    pool = [
        _layout(f, False, pick),
        f"By area the colours are {_join_en(shares)}.",
        pick.choose([f"The {f.orientation} frame suits a {EN_KIND[f.kind]} like this one.",
                     f"Being {f.orientation}, the frame gives the {names[0]} plenty of room."]),
        pick.choose(["I cannot read fine detail from these statistics, only colour, light and layout.",
                     "A real model would name objects here; the practice server only measures the pixels."]),
        f"Seen as a whole, it stays {EN_TONE[f.tone]}, which matches a mean brightness of {round(f.brightness)}.",
    ]
    if round_no:  # a later round says it again from another angle
        leads = ["Also, ", "In addition, ", "Looking closer, ", "On a second look, ", "To sum up, "]
        k = (round_no - 1) % len(leads)
        lead = pick.choose(leads[k:] + leads[:k])
        pool[0] = lead + pool[0][0].lower() + pool[0][1:]
    return pool


def _more_zh(f: ImageFacts, pick: _Sampler, round_no: int) -> list[str]:
    names = [ZH_COLOURS[n] for n, _ in f.colours]
    shares = "、".join(f"{ZH_COLOURS[n]}约{_percent(s)}%" for n, s in f.colours)
    pool = [
        _layout(f, True, pick),
        f"按面积计算，{shares}。",
        f"{ZH_ORIENTATION[f.orientation]}的画面让{names[0]}显得很突出。",
        pick.choose(["我只能从像素统计里读出颜色、明暗和布局，读不出细节。",
                     "真正的模型会说出物体的名字；练习服务器只测量像素。"]),
        f"从整体看，画面{ZH_TONE[f.tone]}，平均亮度约为{round(f.brightness)}。",
    ]
    if round_no:
        leads = ["另外，", "此外，", "仔细看，", "再看一遍，", "总的来说，"]
        k = (round_no - 1) % len(leads)
        pool[0] = pick.choose(leads[k:] + leads[:k]) + pool[0]
    return pool


def compose_answer(prompt: Prompt) -> str:
    """The full answer text (before the leaked role prefix, before max_tokens).

    The language follows a system prompt that asks for one ("Answer in Chinese."), else the question's;
    a system prompt asking for brevity gets one sentence. Sampling parameters shape the wording
    (see :class:`_Sampler`).

    Example:
        >>> compose_answer(Prompt("Hello", (), 1, "", "seed"))[:45]
        'This is a simulated answer from the practice '
    """
    pick = _Sampler(prompt)
    if _WANTS_ZH.search(prompt.system):
        chinese = True
    elif _WANTS_EN.search(prompt.system):
        chinese = False
    else:
        chinese = is_chinese(prompt.question)
    brief = bool(_BRIEF.search(prompt.system))
    topics = _topics(prompt.question)
    parts: list[str] = []
    if prompt.images:
        f = prompt.images[-1]
        parts += _sentences_zh(f, topics, pick) if chinese else _sentences_en(f, topics, pick)
        if not brief and pick.choose(["", "detail"]):  # higher temperatures add detail more often
            parts.append(_layout(f, chinese, pick))
    else:
        q = prompt.question.strip().replace("\n", " ")
        short = q if len(q) <= 60 else q[:57] + "…"
        if chinese:
            parts += ["这是练习服务器的模拟回答。", f"你的问题是：“{short}”。",
                      "这次请求里没有图片，所以我只能根据文字回答。"]
        else:
            parts += ["This is a simulated answer from the practice server.", f"You asked: \u201c{short}\u201d.",
                      pick.choose(["There is no image in this request, so I can only answer from the text.",
                                   "No image came with this request, so I can only go by the text."])]
    if brief:
        parts = parts[:1]
    sep = "" if chinese else " "
    text = sep.join(parts)
    target = None if brief else _target_length(prompt.question)
    if target and prompt.images:
        count, round_no = len(split_tokens(text)), 0
        while count < target:
            more = (_more_zh if chinese else _more_en)(prompt.images[-1], pick, round_no)
            for sentence in more:
                text += sep + sentence
                count += len(split_tokens(sep + sentence))
                if count >= target:
                    break
            round_no += 1
    elif target:
        filler = ("练习服务器没有运行真正的模型，这段文字只是为了达到你要求的长度。" if chinese else
                  " The practice server runs no real model, so this text only fills the length you asked for.")
        count = len(split_tokens(text))
        while count < target:
            text += filler
            count += len(split_tokens(filler))
    return text
