"""The student's own copy of the lessons: added to, never overwritten, never deleted.

``make lab`` opens JupyterLab on ``work/`` (ignored by git), made from ``notebooks/`` on the first run.
Each later run adds the lessons and images that are new in the course and leaves every file already
in ``work/`` as it is, so a student's edits survive a ``git pull`` and ``make test`` keeps checking the
course's own ``notebooks/``. On a hub, nbgitpuller does the same job (see the README).

Example:
    >>> import tempfile, pathlib
    >>> src, dest = (pathlib.Path(tempfile.mkdtemp()) / name for name in ("lessons", "work"))
    >>> _ = src.mkdir(), (src / "01-first.ipynb").write_text("{}")
    >>> sync(src, dest).added
    ('01-first.ipynb',)
    >>> sync(src, dest).added, sync(src, dest).kept
    ((), ('01-first.ipynb',))
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, UsageError
from .i18n import _, ngettext

__all__ = ["LABS_FOLDER", "MARKER", "SKIPPED_NAMES", "SyncReport", "course_checkout", "find_workspace",
           "lab_destination", "sync"]

#: Names never copied into a workspace: caches, checkpoints and what running the lessons writes.
SKIPPED_NAMES = frozenset({"__pycache__", ".ipynb_checkpoints", "outputs", "conftest.py"})


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync` did: the files it ``added`` and those it ``kept`` as they were (paths relative
    to ``dest``, ``/``-separated), and whether it ``created`` ``dest``.

    Example:
        >>> SyncReport(Path("work"), added=("a.ipynb",), kept=(), created=True).summary().splitlines()[1]
        '  + a.ipynb'
    """

    dest: Path
    added: tuple[str, ...]
    kept: tuple[str, ...]
    created: bool

    def summary(self) -> str:
        """One paragraph for a person: what was added, what was kept.

        Example:
            >>> report = SyncReport(Path("work"), added=("b.ipynb",), kept=("a.ipynb",), created=False)
            >>> report.summary().splitlines()[1:2]
            ['  + b.ipynb']
        """
        n_added, n_kept = len(self.added), len(self.kept)
        if not self.added:
            return ngettext("{dest}: nothing new; {n} file kept as it is.",
                            "{dest}: nothing new; {n} files kept as they are.", n_kept).format(dest=self.dest, n=n_kept)
        if self.created:
            head = ngettext("{dest}: created with {n} file from the course:",
                            "{dest}: created with {n} files from the course:", n_added)
        else:
            head = ngettext("{dest}: {n} new file from the course:", "{dest}: {n} new files from the course:", n_added)
        lines = [head.format(dest=self.dest, n=n_added)] + [f"  + {name}" for name in self.added]
        if self.kept:
            lines.append(ngettext("{n} file already there was kept as it is.",
                                  "{n} files already there were kept as they are.", n_kept).format(n=n_kept))
        return "\n".join(lines)


def _refuse(dest: Path, why: str) -> ConfigError:
    return ConfigError(_("Refusing to use {dest} as a workspace: {why}. Choose a new folder of its own, "
                         "e.g. 'work'.").format(dest=dest, why=why))


#: The file that marks a folder as a workspace this function made (hidden: never copied, never shown).
MARKER = ".labkit-workspace"


def _check_destination(src: Path, dest: Path) -> None:
    """Raise :class:`ConfigError` for a destination that could hold anything but a workspace."""
    real, real_src = dest.resolve(), src.resolve()
    if real == Path(real.anchor):
        raise _refuse(dest, _("it is the root of the file system"))
    if real == Path.home().resolve():
        raise _refuse(dest, _("it is the home folder"))
    if real == real_src or real_src in real.parents:
        raise _refuse(dest, _("it is inside the course's own lessons {src}").format(src=src))
    if real in real_src.parents:
        raise _refuse(dest, _("it contains the course's lessons {src}").format(src=src))
    if (real / ".git").exists():
        raise _refuse(dest, _("it is a git repository"))
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise _refuse(dest, _("it exists and is not a folder"))
    if dest.is_dir() and not (dest / MARKER).exists() and any(not n.startswith(".") for n in os.listdir(dest)):
        raise _refuse(dest, _("it already holds files of its own and is not a workspace labkit made"))


def _files(src: Path) -> list[Path]:
    """The regular files under ``src`` worth copying (no hidden names, links, caches or outputs)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_NAMES
                         and not os.path.islink(os.path.join(root, d)))
        for name in sorted(files):
            path = Path(root, name)
            if name.startswith(".") or name in SKIPPED_NAMES or name.endswith(".pyc") or path.is_symlink():
                continue
            found.append(path)
    return found


def sync(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> SyncReport:
    """Copy into ``dest`` every file of ``src`` that ``dest`` lacks; never overwrite, never delete.

    A file already in ``dest`` (edited or not), or anything standing where it would go, is kept as it
    is. Refuses (:class:`labkit.ConfigError`) an empty path, the root, the home folder, a git repository,
    or a folder inside or around ``src``.

    Example:
        >>> sync("notebooks", "/")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        labkit.ConfigError: ...
    """
    if not os.fspath(dest).strip():
        raise _refuse(Path(os.fspath(dest)), _("the path is empty"))
    src_path, dest_path = Path(src), Path(os.path.expanduser(os.fspath(dest)))
    _check_destination(src_path, dest_path)
    if not src_path.is_dir():
        raise ConfigError(_("No lessons folder at {src}: run this from the course's folder, or name the "
                            "folder with --from.").format(src=src_path))
    created = not dest_path.exists()
    dest_path.mkdir(parents=True, exist_ok=True)
    (dest_path / MARKER).touch()
    added: list[str] = []
    kept: list[str] = []
    for path in _files(src_path):
        rel = path.relative_to(src_path)
        target = dest_path / rel
        name = rel.as_posix()
        if any(p.exists() and not p.is_dir() for p in list(target.parents)[: len(rel.parts) - 1]):
            kept.append(name)  # a file stands where a folder would go: leave the student's file alone
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "rb") as fin, open(target, "xb") as fout:  # "x": never replaces a file
                shutil.copyfileobj(fin, fout)
        except FileExistsError:
            kept.append(name)
            continue
        except IsADirectoryError:
            kept.append(name)
            continue
        shutil.copystat(path, target)
        added.append(name)
    return SyncReport(dest_path, tuple(added), tuple(kept), created)


#: The workspace's own folder for the graded labs that ``labkit assignment NAME`` writes.
LABS_FOLDER = "labs"


def find_workspace(start: str | os.PathLike[str] = ".") -> Path | None:
    """The workspace ``start`` is in (a folder :func:`sync` made, at or above ``start``), else the ``work/``
    workspace beside ``start`` or one of its parents (``make lab``'s, seen from the course's folder); ``None``.

    Example:
        >>> import tempfile, pathlib
        >>> course = pathlib.Path(tempfile.mkdtemp())
        >>> find_workspace(course) is None
        True
        >>> _ = sync("notebooks", course / "work")
        >>> find_workspace(course) == find_workspace(course / "work" / "images") == (course / "work").resolve()
        True
    """
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / MARKER).is_file():
            return folder
        if (folder / "work" / MARKER).is_file():
            return folder / "work"
    return None


def course_checkout(path: str | os.PathLike[str]) -> Path | None:
    """The course's git checkout that holds ``path`` (a git work tree with the lessons and the graded labs:
    ``notebooks/`` and ``labkit/assignments/``), or ``None``.

    Example:
        >>> course_checkout("/") is None
        True
    """
    here = Path(path).resolve()
    for folder in (here, *here.parents):
        lessons, labs = folder / "notebooks", folder / "labkit" / "assignments"
        if (folder / ".git").exists() and lessons.is_dir() and labs.is_dir():
            return folder
    return None


def _inside_workspace(path: Path, top: Path) -> bool:
    """Whether ``path`` is in a workspace that lies within ``top``."""
    return any((folder / MARKER).is_file() for folder in (path, *path.parents)
               if folder == top or top in folder.parents)


def lab_destination(dest: str | os.PathLike[str] | None, *, name: str = "NAME",
                    start: str | os.PathLike[str] = ".") -> Path:
    """The folder ``labkit assignment NAME [DEST]`` writes a graded lab into: ``DEST``, or without it the
    workspace's ``labs/`` folder (found from ``start``, the current folder, which a relative ``DEST`` is
    relative to; outside any workspace and course checkout, as on a hub, ``start``'s own ``labs/``). A
    ``DEST`` inside the course's git checkout but outside the workspace is refused (:class:`labkit.UsageError`,
    saying where to put it): git would track the lab, and JupyterLab, which shows the workspace, would not.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> lab_destination(folder / "handout") == folder / "handout"
        True
    """
    workspace = find_workspace(start)
    if dest is None:
        if workspace is None and course_checkout(start) is None:  # e.g. a hub's home: the folder shown
            return Path(start) / LABS_FOLDER
        if workspace is None:
            raise UsageError(_(
                "No workspace found from {cwd}: run `make lab` once in the course's folder (it makes work/ and "
                "opens JupyterLab there), then run `labkit assignment {name}` in JupyterLab's terminal; or name "
                "the folder yourself: `labkit assignment {name} DEST`.").format(cwd=Path(start).resolve(), name=name))
        return workspace / LABS_FOLDER
    target = Path(start) / os.path.expanduser(os.fspath(dest))  # relative to the current folder
    checkout = course_checkout(target)
    if checkout is None or _inside_workspace(target.resolve(), checkout):
        return target
    if workspace is not None and (workspace == checkout or checkout in workspace.parents):
        raise UsageError(_(
            "{dest} is inside the course's git checkout {checkout}, outside your workspace {workspace}: git would "
            "track the lab and JupyterLab's file browser would not show it. Leave DEST out to write it into "
            "{labs} (`labkit assignment {name}`), or give a folder inside {workspace}.").format(
                dest=dest, checkout=checkout, workspace=workspace, labs=workspace / LABS_FOLDER, name=name))
    raise UsageError(_(
        "{dest} is inside the course's git checkout {checkout}: git would track the lab. Run `make lab` once to "
        "make your workspace ({work}), then run `labkit assignment {name}` (it writes into {labs}), or give a "
        "folder outside the checkout.").format(dest=dest, checkout=checkout, work=checkout / "work",
                                               labs=checkout / "work" / LABS_FOLDER, name=name))
