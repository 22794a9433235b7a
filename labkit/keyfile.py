"""API keys for the servers labkit starts (``labkit serve``, ``labkit practice``) from a file or the
environment, never from a command line: every user of the machine can read a command line (``ps``,
``/proc/PID/cmdline``).

A key file holds one key a line, or ``username,key`` lines (the key is the last field), so the keys file
of a hub (``LABKIT_KEYS_FILE``) serves as it is. Blank lines and lines starting with ``#`` are skipped.

Example:
    >>> keys_from_text("# the class\\nada,sk-ada-1\\n\\nsk-ta-2\\n")
    ['sk-ada-1', 'sk-ta-2']
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .errors import UsageError
from .i18n import _

__all__ = ["keys_from_text", "read_key_file", "keys_on_command_line", "command_line_warning"]


def keys_from_text(text: str) -> list[str]:
    """The keys in a key file's text, in order, without duplicates.

    Example:
        >>> keys_from_text("sk-1\\nbo, sk-2 \\nsk-1\\n")
        ['sk-1', 'sk-2']
    """
    keys: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = line.rsplit(",", 1)[-1].strip()
        if key and key not in keys:
            keys.append(key)
    return keys


def read_key_file(path: str | os.PathLike[str], *, warn: bool = True) -> list[str]:
    """The keys in the file at ``path``; a :class:`labkit.UsageError` naming the file if it cannot be read
    or holds none. With ``warn``, a warning on stderr when other users may read the file.

    Example:
        >>> try:
        ...     read_key_file("/nonexistent/keys.txt")
        ... except UsageError as exc:
        ...     print(str(exc)[:42])
        Cannot read the API key file /nonexistent/
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(_("Cannot read the API key file {path}: {reason}. Give a text file with one key a line "
                           "(or `username,key` lines).").format(path=str(file), reason=exc)) from None
    keys = keys_from_text(text)
    if not keys:
        raise UsageError(_("The API key file {path} holds no key: write one key a line (or `username,key` "
                           "lines).").format(path=str(file)))
    if warn and mode & (stat.S_IRGRP | stat.S_IROTH):
        import sys

        print(_("Warning: other users of this machine may read the API key file {path} (mode {mode}): "
                "`chmod 600 {path}`.").format(path=str(file), mode=oct(stat.S_IMODE(mode))),
              file=sys.stderr, flush=True)
    return keys


def keys_on_command_line(args: Sequence[str], flag: str = "--api-key") -> tuple[list[str], list[str]]:
    """``(args without flag and its value, the keys they carried)``: ``--api-key K`` and ``--api-key=K``.

    Example:
        >>> keys_on_command_line(["--port", "1", "--api-key", "sk-a", "--api-key=sk-b"])
        (['--port', '1'], ['sk-a', 'sk-b'])
    """
    rest: list[str] = []
    keys: list[str] = []
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name == flag:
            if eq:
                keys.append(value)
            elif i + 1 < len(args):
                keys.append(args[i + 1])
                i += 1
            i += 1
            continue
        rest.append(arg)
        i += 1
    return rest, [k for k in keys if k]


def command_line_warning(program: str, instead: str) -> str:
    """The warning printed when a key was given on a command line.

    Example:
        >>> "ps" in command_line_warning("labkit practice", "--api-key-file FILE")
        True
    """
    return _("Warning: an API key was given on the command line of {program}, where every user of this machine "
             "can read it (`ps`, /proc/PID/cmdline) while it runs. Use {instead} instead.").format(
        program=program, instead=instead)
