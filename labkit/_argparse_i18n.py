"""argparse's own words ("usage:", "options", "show this help message and exit", its errors) in the
language labkit speaks.

argparse translates them with the standard ``gettext`` domain ``argparse``, for which no Chinese catalog
is installed anywhere; :func:`argparse_in_language` routes them through labkit's own catalog while the
``labkit`` command builds its parsers and parses (the messages are listed here for extraction, with
their ``%``-placeholders, which a translation keeps). Outside that ``with`` block argparse is untouched.

Example:
    >>> import argparse
    >>> with argparse_in_language():
    ...     parser = ArgumentParser(prog="labkit")
    >>> parser.format_usage().startswith(("usage:", "用法："))
    True
"""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from .i18n import N_, language, translations

__all__ = ["ARGPARSE_MESSAGES", "ArgumentParser", "argparse_in_language"]

#: argparse's messages that a user of the ``labkit`` command can meet (Python 3.10 to 3.13). Its one
#: plural, "expected %s arguments", is for options taking a fixed count (nargs=2 ...), which labkit has none of.
ARGPARSE_MESSAGES = (
    N_("usage: "),
    N_("positional arguments"),
    N_("options"),
    N_("show this help message and exit"),
    N_("show program's version number and exit"),
    N_("%(prog)s: error: %(message)s\n"),
    N_("%(prog)s: warning: %(message)s\n"),
    N_("argument %(argument_name)s: %(message)s"),
    N_("unrecognized arguments: %s"),
    N_("the following arguments are required: %s"),
    N_("one of the arguments %s is required"),
    N_("not allowed with argument %s"),
    N_("ignored explicit argument %r"),
    N_("expected one argument"),
    N_("expected at most one argument"),
    N_("expected at least one argument"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("unexpected option string: %s"),
    N_("invalid %(type)s value: %(value)r"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
    N_("can't open '%(filename)s': %(error)s"),
    N_("option '%(option)s' is deprecated"),
    N_("argument '%(argument_name)s' is deprecated"),
    N_("command '%(parser_name)s' is deprecated"),
)


@contextmanager
def argparse_in_language() -> Iterator[None]:
    """Within this block argparse speaks labkit's language (Chinese or English, :func:`labkit.i18n.language`).

    Example:
        >>> with argparse_in_language():
        ...     pass
    """
    catalog = translations(language())
    saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    argparse._, argparse.ngettext = catalog.gettext, catalog.ngettext  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


_CHINESE_HEADING = re.compile(r"(?m)^(\S[^\n]*[\u3400-\u9fff]):$")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with a full-width colon after a Chinese section heading ("选项："), and lines
    never broken inside a flag (``--data-parallel-size``)."""

    def format_help(self) -> str:
        return _CHINESE_HEADING.sub(r"\1：", super().format_help())

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` (and its subcommands' parsers) whose help punctuates Chinese headings.

    Example:
        >>> ArgumentParser(prog="labkit").formatter_class.__name__
        '_HelpFormatter'
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
