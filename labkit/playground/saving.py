"""Saving a playground conversation as JSON Lines, safely: :func:`write_jsonl`.

The rules, each one a trap a student met:

- only a name ending in ``.jsonl``, with no NUL or other control character in it;
- with ``within`` (the Save button passes the working folder), only inside that folder, links included;
- only a regular file: never a symbolic link (``O_NOFOLLOW``), a FIFO (looked at with ``lstat`` and
  opened with ``O_NONBLOCK``, so a FIFO named ``*.jsonl`` cannot hang the kernel), a device or a folder;
- a file is replaced only when it holds this conversation (every line carries its ``conversation`` id),
  or when the caller says so; never an empty file or another conversation. The new content is written
  to a temporary file beside it and renamed over it, so a failure leaves the old file whole.

Example:
    >>> write_jsonl("nul\\x00.jsonl", [{"turn": 1}], conversation="c1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    labkit.UsageError: ...
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Literal

from ..errors import OutputError, UsageError
from ..i18n import _

__all__ = ["write_jsonl"]

_READ_LIMIT = 8 * 1024 * 1024  # a conversation's file is far smaller; a bigger file is someone else's
_NEW_NAMES = 1000


def _check_name(path: str | os.PathLike[str]) -> Path:
    try:
        text = os.fspath(path)
    except TypeError:
        text = None
    if not isinstance(text, str):
        raise UsageError(_("The file name must be text (a str or a Path), not {kind}.").format(
            kind=type(path).__name__))
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UsageError(_("The file name {name} contains a control character (such as NUL or a line break): type a "
                           "plain file name, e.g. 'playground.jsonl'.").format(name=ascii(text)))
    target = Path(text)
    if target.suffix != ".jsonl":
        raise UsageError(_("{path} does not end in .jsonl: save the conversation as e.g. 'playground.jsonl', never "
                           "over a notebook or another file.").format(path=target))
    return target


def _inside(target: Path, folder: Path) -> Path:
    """``target`` (relative to ``folder`` unless absolute) as an absolute path inside ``folder``,
    symbolic links in its folders followed; :class:`UsageError` if it leads outside."""
    root = folder.resolve()
    full = Path(os.path.normpath(root / target))
    where = full.parent.resolve()
    if not where.is_relative_to(root):  # the folder written into, links followed (what is returned below)
        raise UsageError(_("{path} is outside the working folder {folder}: the Save button saves only inside it. "
                           "Type a name inside it, e.g. 'outputs/playground.jsonl', or save elsewhere in code with "
                           "pg.save(path).").format(path=target, folder=root))
    return where / full.name


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return _("a folder")
    if stat.S_ISFIFO(mode):
        return _("a named pipe (FIFO)")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return _("a device")
    if stat.S_ISSOCK(mode):
        return _("a socket")
    return _("a special file")


def _problem(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    return OutputError(_("Could not save to {path} ({problem}): choose another file name or folder.").format(
        path=path, problem=_problem(exc)))


def _look(path: Path, conversation: str) -> Literal["free", "ours", "taken"]:
    """Whether ``path`` is free, holds this conversation, or holds something else; refuses anything
    that is not a regular file (without opening it, and opening it so that it could not block)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "free"
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(_("{path} is a symbolic link: the playground saves only into regular files, never through "
                            "a link. Choose another file name.").format(path=path))
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(_("{path} is not a regular file but {kind}: the playground saves only into regular files. "
                            "Choose another file name.").format(path=path, kind=_kind(st.st_mode)))
    if st.st_size == 0 or st.st_size > _READ_LIMIT:
        return "taken"  # never written by a playground (it never saves nothing), or far too big to be one
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return "taken"  # unreadable: it may hold anything
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since lstat
            raise OutputError(_("{path} is not a regular file but {kind}: the playground saves only into regular "
                                "files. Choose another file name.").format(path=path, kind=_kind(os.fstat(fd).st_mode)))
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(_READ_LIMIT + 1)
    except OSError:
        return "taken"
    finally:
        os.close(fd)
    try:
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError):
        return "taken"
    ours = bool(rows) and all(isinstance(r, dict) and r.get("conversation") == conversation for r in rows)
    return "ours" if ours else "taken"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _create(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist: never a link, never an existing file) and write ``data``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    try:
        _write_all(fd, data)
    except OSError:
        os.close(fd)
        try:
            os.unlink(path)  # this call created it: nothing of anyone's is lost
        except OSError:
            pass
        raise
    os.close(fd)


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over ``path`` (which is replaced, never written through)."""
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _write_all(fd, data)
        os.fchmod(fd, mode)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_jsonl(path: str | os.PathLike[str], records: list[dict[str, Any]], *, conversation: str,
                if_taken: Literal["raise", "rename", "replace"] = "raise",
                within: str | os.PathLike[str] | None = None) -> Path:
    """Write ``records`` as JSON Lines to ``path`` under the rules above; return the path written.

    ``conversation`` is the id every record carries (a file whose lines all carry it may be replaced).
    ``if_taken`` says what to do when the file holds anything else: ``"raise"`` a :class:`labkit.UsageError`,
    ``"rename"`` to the first free ``NAME-2.jsonl``, ``NAME-3.jsonl``…, or ``"replace"`` it. A name
    that cannot be used raises :class:`labkit.UsageError`; the file system's refusals
    :class:`labkit.OutputError`, with the path.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> write_jsonl(folder / "a.jsonl", [{"turn": 1, "conversation": "c1"}], conversation="c1").name
        'a.jsonl'
        >>> write_jsonl(folder / "a.jsonl", [{"turn": 1, "conversation": "c2"}], conversation="c2",
        ...             if_taken="rename").name
        'a-2.jsonl'
    """
    if if_taken not in ("raise", "rename", "replace"):
        raise UsageError(_("if_taken must be 'raise', 'rename' or 'replace', not {value!r}.").format(value=if_taken))
    target = _check_name(path)
    if within is not None:
        target = _inside(target, Path(within))
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(_("Could not make the folder {folder} ({problem}): choose another folder.").format(
            folder=target.parent, problem=_problem(exc))) from exc
    if within is not None:
        target = _inside(target, Path(within))  # the folders made just now, or found, may not lead out
    candidate = target
    for number in range(1, _NEW_NAMES + 1):
        if number > 1:
            candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
        try:
            state = _look(candidate, conversation)
        except OutputError:
            if candidate == target:
                raise
            continue  # a later name that is a link or a FIFO: the next one
        try:
            if state == "free":
                try:
                    _create(candidate, data)
                except FileExistsError:  # made meanwhile: look again at the next name
                    if if_taken != "rename":
                        raise UsageError(_taken(candidate)) from None
                    continue
                return candidate
            if state == "ours" or if_taken == "replace":
                _replace(candidate, data)
                return candidate
        except OSError as exc:
            if isinstance(exc, OutputError):
                raise
            if exc.errno == errno.ELOOP:  # a link appeared under the name since it was looked at
                raise OutputError(_("{path} is a symbolic link: the playground saves only into regular files, never "
                                    "through a link. Choose another file name.").format(path=candidate)) from exc
            raise _cannot_write(candidate, exc) from exc
        if if_taken == "raise":
            raise UsageError(_taken(candidate))
    raise OutputError(_("Could not find a free name beside {path}: choose another file name.").format(path=target))


def _taken(path: Path) -> str:
    return _("{path} already holds something else (another conversation, another file, or an empty file this "
             "playground did not write), so it was kept: save under another name, or pass replace=True to replace "
             "it.").format(path=path)
