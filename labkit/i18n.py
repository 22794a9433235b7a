"""What labkit says to a person, in Simplified Chinese or English, through gettext.

Messages are written in English inside ``_()`` with named ``{placeholders}`` and formatted after
translation, so a translator can move a placeholder but never lose one:
``_("No file at {path}: check the name.").format(path=path)``. The catalogs live in
``labkit/locale/<lang>/LC_MESSAGES/labkit.po`` (compiled to ``.mo``); Babel extracts and compiles them
(see the README's section for maintainers).

The language is ``LABKIT_LANG`` (``zh`` or ``en``) when set, else the locale's (``LC_ALL``,
``LC_MESSAGES``, ``LANG``, ``LANGUAGE``): Chinese for ``zh_*``, English otherwise.

Example:
    >>> import os
    >>> language({"LABKIT_LANG": "en"}), language({"LANG": "zh_CN.UTF-8"}), language({})
    ('en', 'zh', 'en')
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

__all__ = ["DOMAIN", "LOCALE_DIR", "LANGUAGES", "language", "translations", "_", "ngettext"]

DOMAIN = "labkit"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("zh", "en")


def language(env: Mapping[str, str] | None = None) -> str:
    """The language labkit speaks now: ``"zh"`` or ``"en"``.

    Example:
        >>> language({"LABKIT_LANG": "zh_CN"})
        'zh'
    """
    env = os.environ if env is None else env
    chosen = env.get("LABKIT_LANG", "").strip().lower()
    if not chosen:
        for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
            chosen = env.get(name, "").strip().lower()
            if chosen:
                break
    return "zh" if chosen.startswith("zh") else "en"


@lru_cache(maxsize=None)
def translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalog for ``lang`` (English is the messages themselves).

    Example:
        >>> translations("en").gettext("stopped")
        'stopped'
    """
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang], fallback=True)


def _(message: str) -> str:
    """Translate one message into the current language (format its placeholders afterwards).

    Example:
        >>> _("stopped") if language() == "en" else "stopped"
        'stopped'
    """
    return translations(language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message whose wording depends on a count ``n``.

    Example:
        >>> ngettext("{n} answer", "{n} answers", 2).format(n=2) if language() == "en" else "2 answers"
        '2 answers'
    """
    return translations(language()).ngettext(singular, plural, n)
