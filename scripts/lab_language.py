"""Make JupyterLab's own interface speak the language labkit speaks (run by `make lab`).

labkit speaks Chinese, the course's language, unless LABKIT_LANG or a locale naming another language
says otherwise (labkit.i18n.language: C, C.UTF-8, POSIX or no locale stay Chinese). JupyterLab
keeps its interface language in a setting; with the Chinese language pack installed (the `lab` extra
has jupyterlab-language-pack-zh-CN) this writes that setting into the virtual environment's
``share/jupyter/lab/settings/overrides.json`` — keeping any other override there — so the interface
opens in Chinese where the student reads Chinese, and in English otherwise. A student who picks a
language in JupyterLab's Settings menu keeps their choice: user settings win over these defaults.

Usage: python scripts/lab_language.py            (uses sys.prefix)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from labkit.i18n import language

PLUGIN = "@jupyterlab/translation-extension:plugin"
LOCALES = {"zh": "zh_CN", "en": "en"}


def main() -> int:
    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    try:
        overrides = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as e:
        print(f"lab_language: left {path} as it is ({e})", file=sys.stderr)
        return 0
    lang = language()
    wanted = LOCALES[lang]
    if lang == "zh":
        try:
            import jupyterlab_language_pack_zh_CN  # noqa: F401
        except ImportError:
            print("lab_language: the Chinese language pack is not installed (pip install "
                  "jupyterlab-language-pack-zh-CN); JupyterLab stays in English", file=sys.stderr)
            wanted = "en"
    if overrides.get(PLUGIN, {}).get("locale") == wanted:
        return 0
    overrides.setdefault(PLUGIN, {})["locale"] = wanted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(overrides, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
