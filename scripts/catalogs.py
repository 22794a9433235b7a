"""Maintain labkit's message catalogs (gettext, with Babel).

    python scripts/catalogs.py update    # extract every _() message, merge into each language's .po, compile .mo
    python scripts/catalogs.py check     # exit 1 if a message lacks a translation, a placeholder, or a fresh .mo

The English messages in the code are the msgids; ``labkit/locale/<lang>/LC_MESSAGES/labkit.po`` holds
the translations and ``labkit.mo`` the compiled form that labkit loads at run time (committed, so an
installed kit needs no Babel). Translations waiting to be merged (new ones, or changed ones, which
replace the catalog's) may sit in ``labkit/locale/<lang>/parts/*.po``; ``update`` folds them in and
removes a part once every message in it is in the catalog (a part whose messages are not in the code
yet, e.g. from an unmerged branch, stays).
"""

from __future__ import annotations

import string
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "labkit"
LOCALE = PACKAGE / "locale"
DOMAIN = "labkit"
LANGUAGES = ("zh",)
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}


def extract() -> Catalog:
    """Every message wrapped in ``_()``/``ngettext()`` in the package, with where it is used."""
    template = Catalog(project="labkit", domain=DOMAIN)
    method_map = [("**.py", "python")]
    for filename, lineno, message, comments, context in extract_from_dir(
        str(PACKAGE), method_map=method_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
    ):
        template.add(message, locations=[(f"labkit/{filename}", lineno)], auto_comments=comments, context=context)
    return template


def placeholders(text: str) -> set[str]:
    """The ``{named}`` fields of a format string (``{{`` escapes excluded)."""
    try:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError:  # unbalanced braces: report as its own kind of field so a check fails
        return {"<unbalanced braces>"}


def _ids(message: object) -> tuple[str, ...]:
    mid = message.id  # type: ignore[attr-defined]
    return tuple(mid) if isinstance(mid, (list, tuple)) else (mid,)


def _strings(message: object) -> tuple[str, ...]:
    s = message.string  # type: ignore[attr-defined]
    return tuple(s) if isinstance(s, (list, tuple)) else (s,)


def _po_path(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def _read(path: Path, lang: str) -> Catalog:
    if not path.exists():
        return Catalog(locale=lang, domain=DOMAIN)
    with path.open("rb") as f:
        return read_po(f, locale=lang, domain=DOMAIN)


def update() -> int:
    template = extract()
    for lang in LANGUAGES:
        po_path = _po_path(lang)
        catalog = _read(po_path, lang)
        parts = sorted((LOCALE / lang / "parts").glob("*.po"))
        waiting = {}  # translations from the parts, by message id
        ids_of: dict[Path, set[str]] = {}
        for part in parts:
            ids_of[part] = set()
            for message in _read(part, lang):
                if message.id and all(_strings(message)):
                    waiting[_ids(message)[0]] = message.string
                    ids_of[part].add(_ids(message)[0])
        catalog.update(template, no_fuzzy_matching=True)
        for message in catalog:  # a part's translation is newer: it fills a gap or replaces the old one
            if message.id and _ids(message)[0] in waiting:
                message.string = waiting[_ids(message)[0]]
                message.flags.discard("fuzzy")
        catalog.obsolete.clear()
        po_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("wb") as f:
            write_po(f, catalog, width=100, sort_output=True, omit_header=False)
        with po_path.with_suffix(".mo").open("wb") as f:
            write_mo(f, catalog)
        in_code = {_ids(m)[0] for m in template if m.id}
        for part in parts:  # a part goes once all of it is in the catalog; messages not (yet) in the code stay
            left = sorted(ids_of[part] - in_code)
            if left:
                print(f"kept {part.relative_to(ROOT)}: {len(left)} message(s) not in the code yet, e.g. {left[0]!r}")
            else:
                part.unlink()
        print(f"{po_path.relative_to(ROOT)}: {len(catalog)} messages")
    return check()


def problems() -> list[str]:
    """What is wrong with the catalogs, one line each (empty when all is well)."""
    found: list[str] = []
    template = extract()
    for lang in LANGUAGES:
        po_path = _po_path(lang)
        catalog = _read(po_path, lang)
        for message in template:
            if not message.id:
                continue
            where = ", ".join(f"{f}:{n}" for f, n in message.locations[:2])
            have = catalog.get(message.id, message.context)
            if have is None or not all(_strings(have)) or have.fuzzy:
                found.append(f"[{lang}] no translation for {_ids(message)[0]!r} ({where})")
                continue
            wanted = set().union(*(placeholders(i) for i in _ids(message)))
            for text in _strings(have):
                if placeholders(text) != wanted:
                    found.append(
                        f"[{lang}] translation of {_ids(message)[0]!r} has placeholders "
                        f"{sorted(placeholders(text))}, the message {sorted(wanted)} ({where})"
                    )
        mo_path = po_path.with_suffix(".mo")
        if not mo_path.exists():
            found.append(f"[{lang}] {mo_path.relative_to(ROOT)} is missing: run `python scripts/catalogs.py update`")
            continue
        with mo_path.open("rb") as f:
            compiled = read_mo(f)
        stale = [m.id for m in catalog if m.id and all(_strings(m)) and (
            compiled.get(m.id, m.context) is None or _strings(compiled.get(m.id, m.context)) != _strings(m))]
        if stale:
            found.append(f"[{lang}] {mo_path.relative_to(ROOT)} is older than its .po ({len(stale)} messages differ): "
                         "run `python scripts/catalogs.py update`")
    return found


def check() -> int:
    found = problems()
    for line in found:
        print(line)
    print(f"{len(found)} problem(s)" if found else "catalogs complete")
    return 1 if found else 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["update"]:
        return update()
    if argv[1:] == ["check"]:
        return check()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
