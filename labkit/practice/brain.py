"""The practice "model": a deterministic answer computed from what was sent.

It reads the image (size, orientation, colours, brightness, kind), shapes the reply by the question
(colour, size, brightness, kind, a requested length), answers in Chinese when the question is in
Chinese, and gives the same answer to the same request.
"""

from __future__ import annotations

import hashlib
import json
import re
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


def _pick(options: list[str], seed: str, salt: str) -> str:
    h = int(hashlib.sha256((seed + salt).encode()).hexdigest()[:8], 16)
    return options[h % len(options)]


def _topics(question: str) -> set[str]:
    q = question.lower()
    topics = set()
    if re.search(r"colou?r|颜色|色彩|什么色", q):
        topics.add("colour")
    if re.search(r"\bsize\b|resolution|pixels?|how (big|large)|dimension|尺寸|大小|分辨率|像素", q):
        topics.add("size")
    if re.search(r"bright|dark|light|亮|暗", q):
        topics.add("tone")
    if re.search(r"photo|drawing|kind|type|text|照片|图画|类型|文字", q):
        topics.add("kind")
    return topics


def _percent(share: float) -> int:
    return max(1, round(share * 100))


def _facts_en(f: ImageFacts, topics: set[str], seed: str) -> list[str]:
    size = f"{f.width}×{f.height} pixels ({f.orientation})"
    names = [n for n, _ in f.colours]
    others = names[1:]
    colours = f"{names[0]} (about {_percent(f.colours[0][1])}% of it)"
    if others:
        colours += ", with " + (", ".join(others[:-1]) + " and " if len(others) > 1 else "") + others[-1]
    kind = EN_KIND[f.kind]
    sentences = {
        "kind": f"The image looks like a {kind}.",
        "size": f"It is {size}.",
        "colour": f"Its main colour is {colours}.",
        "tone": f"Overall it is {EN_TONE[f.tone]} (mean brightness {round(f.brightness)} of 255).",
    }
    opener = _pick(
        [f"This is a {kind} of {size}.", f"I see a {kind}, {size}.", f"The picture is a {kind} of {size}."],
        seed,
        "open",
    )
    return _arrange(sentences, opener, topics)


def _facts_zh(f: ImageFacts, topics: set[str], seed: str) -> list[str]:
    size = f"{f.width}×{f.height}像素（{ZH_ORIENTATION[f.orientation]}）"
    names = [ZH_COLOURS[n] for n, _ in f.colours]
    colours = f"{names[0]}（约占{_percent(f.colours[0][1])}%）" + (f"，其次是{'、'.join(names[1:])}" if len(names) > 1 else "")
    kind = ZH_KIND[f.kind]
    sentences = {
        "kind": f"这张图看起来是一张{kind}。",
        "size": f"它的尺寸是{size}。",
        "colour": f"主要颜色是{colours}。",
        "tone": f"整体{ZH_TONE[f.tone]}（平均亮度{round(f.brightness)}/255）。",
    }
    opener = _pick([f"这是一张{size}的{kind}。", f"我看到一张{kind}，{size}。"], seed, "open")
    return _arrange(sentences, opener, topics)


def _arrange(sentences: dict[str, str], opener: str, topics: set[str]) -> list[str]:
    """What was asked about first, then the opener (unless size or kind was asked), then the rest."""
    ordered = [sentences[t] for t in ("colour", "size", "tone", "kind") if t in topics]
    rest = [sentences[t] for t in ("colour", "tone") if t not in topics]
    return ordered + ([opener] if "size" not in topics and "kind" not in topics else []) + rest


def _details(f: ImageFacts, chinese: bool, round_no: int) -> list[str]:
    out = []
    for i, name in enumerate(f.regions):
        if chinese:
            out.append(f"{'再看一遍，' if round_no else ''}{REGIONS_ZH[i]}以{ZH_COLOURS[name]}为主。")
        else:
            out.append(f"{'Looking again, the' if round_no else 'The'} {REGIONS_EN[i]} part is mostly {name}.")
    return out


def compose_answer(prompt: Prompt) -> str:
    """The full answer text (before the leaked role prefix, before max_tokens).

    Example:
        >>> compose_answer(Prompt("Hello", (), 1, "", "seed"))[:45]
        'This is a simulated answer from the practice '
    """
    chinese = is_chinese(prompt.question)
    topics = _topics(prompt.question)
    seed = prompt.fingerprint
    parts: list[str] = []
    if prompt.turn > 1:
        parts.append(f"（这是我们对话的第{prompt.turn}轮。）" if chinese else f"(This is turn {prompt.turn} of our conversation.)")
    if prompt.images:
        f = prompt.images[-1]
        parts += _facts_zh(f, topics, seed) if chinese else _facts_en(f, topics, seed)
    else:
        q = prompt.question.strip().replace("\n", " ")
        short = q if len(q) <= 60 else q[:57] + "…"
        parts.append(
            f"这是练习服务器的模拟回答。你的问题是：“{short}”。这次请求里没有图片，所以我只能根据文字回答。"
            if chinese
            else f"This is a simulated answer from the practice server. You asked: \u201c{short}\u201d. "
            "There is no image in this request, so I can only answer from the text."
        )
    if prompt.system:
        parts.append("（我会遵循系统提示。）" if chinese else "(I am following the system prompt.)")
    sep = "" if chinese else " "
    text = sep.join(parts)
    target = _target_length(prompt.question)
    if target and prompt.images:
        count, round_no = len(split_tokens(text)), 0
        while count < target:
            for sentence in _details(prompt.images[-1], chinese, round_no):
                text += sep + sentence
                count += len(split_tokens(sep + sentence))
                if count >= target:
                    break
            round_no += 1
    elif target:
        count = len(split_tokens(text))
        while count < target:
            text += "练习" if chinese else " practice"
            count += 2 if chinese else 1
    return text
