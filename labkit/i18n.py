"""What labkit says to a person, in Simplified Chinese or English, through gettext.

Messages are written in English inside ``_()`` with named ``{placeholders}`` and formatted after
translation, so a translator can move a placeholder but never lose one:
``_("No file at {path}: check the name.").format(path=path)``. The catalogs live in
``labkit/locale/<lang>/LC_MESSAGES/labkit.po`` (compiled to ``.mo``); Babel extracts and compiles them
(see the README's section for maintainers).

Chinese is the course's language. ``LABKIT_LANG`` (``zh`` or ``en``) chooses when set; else a locale
that names a language (the first of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set, then
``LANGUAGE``): Chinese for ``zh_*``, English for any other language (``en_US.UTF-8``, ``fr_FR``).
A locale that names none (``C``, ``C.UTF-8``, ``POSIX``, or none at all, as in most containers and
hubs) leaves Chinese.

Example:
    >>> language({"LABKIT_LANG": "en"}), language({"LANG": "en_US.UTF-8"}), language({"LANG": "C.UTF-8"}), language({})
    ('en', 'en', 'zh', 'zh')
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

__all__ = ["DOMAIN", "LOCALE_DIR", "LANGUAGES", "language", "translations", "_", "N_", "ngettext"]

DOMAIN = "labkit"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGES = ("zh", "en")


def language(env: Mapping[str, str] | None = None) -> str:
    """The language labkit speaks now: ``"zh"`` or ``"en"`` (Chinese unless something names another).

    Example:
        >>> language({"LABKIT_LANG": "zh_CN"}), language({"LC_ALL": "POSIX", "LANG": "en_US.UTF-8"})
        ('zh', 'zh')
    """
    env = os.environ if env is None else env
    chosen = env.get("LABKIT_LANG", "").strip().lower()
    if chosen:
        return "zh" if chosen.startswith("zh") else "en"
    set_locales = (env.get(name, "").strip() for name in ("LC_ALL", "LC_MESSAGES", "LANG"))
    locale = next((value for value in set_locales if value), "")
    if _names_a_language(locale):
        return "zh" if locale.lower().startswith("zh") else "en"
    first = env.get("LANGUAGE", "").strip().split(":")[0]
    if _names_a_language(first):
        return "zh" if first.lower().startswith("zh") else "en"
    return "zh"


def _names_a_language(locale: str) -> bool:
    """Whether a locale such as ``en_US.UTF-8`` names a language (``C``, ``C.UTF-8``, ``POSIX`` name none)."""
    name = locale.split(".")[0].split("@")[0].strip().lower()
    return bool(name) and name not in ("c", "posix")


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


def N_(message: str) -> str:
    """Mark a message for translation where it is defined; ``_()`` translates it where it is shown.

    Example:
        >>> N_("stopped")
        'stopped'
    """
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message whose wording depends on a count ``n``.

    Example:
        >>> ngettext("{n} answer", "{n} answers", 2).format(n=2) if language() == "en" else "2 answers"
        '2 answers'
    """
    return translations(language()).ngettext(singular, plural, n)
