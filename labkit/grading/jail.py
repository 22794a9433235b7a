"""The sandbox around one submission: what the grading child may see, reach and use.

:func:`command` builds the command line that runs :mod:`labkit.grading.execute` for one submission.
Where Linux namespaces are available (as root, or through an unprivileged user namespace) the
child runs under ``unshare`` with its own mount, network and PID namespaces and this module's
:func:`main` prepares them before it ``exec``s the child:

- a fresh, empty ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (nothing left by another submission, and
  the grader's private folder under ``/tmp`` — the autograder with the hidden tests — is gone);
- an empty tmpfs over every folder the grader names as hidden (the assignments' master notebooks,
  the submissions folder, the feedback folder) and ``/dev/null`` over every hidden file (the
  gradebook): the student's code can neither read nor change them;
- the submitted notebook copied into ``/tmp/submission``, the child's working folder;
- a network namespace with only loopback up: the practice server the child starts is reachable,
  nothing else is;
- as root, an unprivileged user id of its own (:func:`grading_uid`, no account, no supplementary
  groups); and resource limits: address space, CPU seconds, file size, open files and,
  for the grading user, processes;
- with a user namespace (no root: every process is the namespace's root, the grader's own user
  outside), a new root holding only the system folders and the Python environment, read-only
  (:func:`_new_root`: the grader's files are not there, the venv cannot be changed); the student's
  process then confines itself (:mod:`labkit.grading.confine`: PID namespace of its own, no
  capabilities) and the supervisor and the test process are not dumpable.

Without namespaces (no root, user namespaces disabled) the child still runs in its own process,
temporary folder, cleaned environment and resource limits; :func:`isolation` says which level
applies so the grader can report it.

Example:
    >>> isolation() in ("root", "userns", "process")
    True
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache

__all__ = ["Limits", "JailConfig", "isolation", "grading_uid", "command", "main"]

GRADER_UID_BASE = 960_000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)


@dataclass(frozen=True)
class Limits:
    """Per-submission limits: ``wall`` seconds for the whole run, ``cell`` seconds per cell,
    ``memory_mb`` of address space, ``output_chars`` of printed output kept, ``file_mb`` per file
    written, ``processes`` for the grading user."""

    wall: float = 120.0
    cell: float = 30.0
    memory_mb: int = 4096
    output_chars: int = 100_000
    file_mb: int = 64
    processes: int = 32


@dataclass(frozen=True)
class JailConfig:
    """What :func:`main` needs, passed as JSON on its command line."""

    workdir: str
    hide_dirs: list[str] = field(default_factory=list)
    hide_files: list[str] = field(default_factory=list)
    uid: int | None = None
    limits: Limits = field(default_factory=Limits)
    expose: list[str] = field(default_factory=list)


def _unshare_works(args: list[str]) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        return subprocess.run([unshare, *args, "--", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=None)
def isolation() -> str:
    """``"root"`` (namespaces and a separate user), ``"userns"`` (namespaces, same user) or
    ``"process"`` (own process and limits only).

    Example:
        >>> isolation() in ("root", "userns", "process")
        True
    """
    if os.environ.get("LABKIT_GRADE_ISOLATION") == "process":
        return "process"
    if os.geteuid() == 0 and _unshare_works(["--mount", "--net", "--pid", "--fork"]):
        return "root"
    if _unshare_works(["--user", "--map-root-user", "--mount", "--net", "--pid", "--fork"]):
        return "userns"
    return "process"


_UID_BLOCK = 256      # ids per run: two per slot (the submission's and the tests' user)
_UID_BLOCKS = 1000
_held: dict[str, int] = {}


def _uid_block() -> int:
    """This process's own block of grading user ids, held (by a lock file) as long as it runs: two
    `labkit grade` runs at once never share an id, so neither can see, signal or count against the
    other's processes.

    Example:
        >>> _uid_block() == _uid_block()
        True
    """
    if "base" in _held:
        return _held["base"]
    folder = os.path.join("/run" if os.access("/run", os.W_OK) else "/tmp", "labkit-grade-uids")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    start = os.getpid() % _UID_BLOCKS
    for step in range(_UID_BLOCKS):
        block = (start + step) % _UID_BLOCKS
        fd = os.open(os.path.join(folder, f"{block}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held["fd"], _held["base"] = fd, GRADER_UID_BASE + block * _UID_BLOCK
        return _held["base"]
    raise OSError(0, "every block of grading user ids is in use")


def grading_uid(slot: int) -> int | None:
    """The unprivileged user (and group) id a submission runs as when the grader is root; the test
    process runs as the next id, in the same group. Two ids per concurrent slot and a block of ids
    per run, so one submission's processes never count against another's limit and two runs never
    meet. These ids have no account (nothing is added to the system) and own nothing outside the
    sandbox.

    Example:
        >>> grading_uid(1) - grading_uid(0) if os.geteuid() == 0 else 2
        2
    """
    if os.geteuid() != 0:
        return None
    if not 0 <= slot < _UID_BLOCK // 2:
        raise ValueError(f"slot {slot} out of range")
    return _uid_block() + 2 * slot


def command(config: JailConfig, child: list[str]) -> list[str]:
    """The command line that runs ``child`` for one submission at the available isolation level."""
    level = isolation()
    # the file itself, not the package: it needs only the standard library, and `import labkit` costs seconds
    jail = [sys.executable, "-I", os.path.abspath(__file__), json.dumps(asdict(config)), "--"]
    if level == "root":
        return [shutil.which("unshare") or "unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
                "--", *jail, *child]
    if level == "userns":
        return [shutil.which("unshare") or "unshare", "--user", "--map-root-user", "--mount", "--net", "--pid",
                "--fork", "--kill-child", "--", *jail, *child]
    return [*jail, *child]


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    import ctypes  # only in the sandbox's init, not on `import labkit`

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} on {target}: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, 0x8913, request))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))     # SIOCSIFFLAGS, IFF_UP


def _closed_ancestors(paths: list[str]) -> dict[str, set[str]]:
    """For each folder others may not enter (e.g. a 0700 /root) on the way to ``paths``: the entries
    inside it that lead there."""
    closed: dict[str, set[str]] = {}
    for path in paths:
        parts = os.path.realpath(path).split(os.sep)[1:]
        current = "/"
        for part in parts:
            try:
                mode = os.stat(current).st_mode
            except OSError:
                break
            if not mode & stat.S_IXOTH:
                closed.setdefault(current, set()).add(part)
                break
            current = os.path.join(current, part)
    return closed


def _expose(paths: list[str]) -> None:
    """Cover each closed folder on the way to ``paths`` (the Python installation, the venv) with an
    empty tmpfs that others may enter, holding only bind mounts of the entries the grading needs:
    the rest of, say, root's home stays invisible."""
    for folder, entries in _closed_ancestors(paths).items():
        handles = {name: os.open(os.path.join(folder, name), os.O_PATH) for name in entries}
        _mount("tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
        for name, handle in handles.items():
            target = os.path.join(folder, name)
            if stat.S_ISDIR(os.fstat(handle).st_mode):
                os.mkdir(target)
            else:
                open(target, "wb").close()
            _mount(f"/proc/self/fd/{handle}", target, None, _MS_BIND | _MS_REC)
            os.close(handle)


_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_SYSTEM = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/sys", "/dev")
_PIVOT_ROOT = {"x86_64": 155, "i686": 217, "aarch64": 41, "riscv64": 41, "loongarch64": 41, "ppc64le": 203,
               "ppc64": 203, "s390x": 217, "armv7l": 218, "armv8l": 218}
_ST_TO_MS = ((_MS_NOSUID, _MS_NOSUID), (_MS_NODEV, _MS_NODEV), (_MS_NOEXEC, _MS_NOEXEC),
             (1024, 1024), (2048, 2048), (4096, 1 << 21))  # statvfs's f_flag bits, as mount flags (atime ones too)


def _read_only(target: str) -> None:
    """Make the bind mount at ``target`` read-only, keeping the flags it has (a user namespace may not
    clear them)."""
    kept = 0
    flags = os.statvfs(target).f_flag
    for st_bit, ms_bit in _ST_TO_MS:
        if flags & st_bit:
            kept |= ms_bit
    _mount("none", target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | kept)


def _new_root(paths: list[str]) -> None:
    """With a user namespace, every process of the sandbox is the namespace's root, which is the
    grader's own user outside: the student's code (whose capabilities are dropped) still owns every
    file the grader owns. So the sandbox's root is a new, empty one holding only the system folders
    and ``paths`` (the Python installation, the venv, labkit), all read-only: the grader's home, keys
    and other files are not there, and the venv cannot be changed."""
    import ctypes

    outer = [p for p in (os.path.realpath(p) for p in paths) if os.path.exists(p)]
    outer = [p for p in _needed_in(outer, ("",)) if not any(p == s or p.startswith(s + os.sep) for s in _SYSTEM)]
    links = {s: os.readlink(s) for s in _SYSTEM if os.path.islink(s)}
    handles = {s: os.open(s, os.O_PATH) for s in [*_SYSTEM, *outer] if s not in links and os.path.exists(s)}
    new = "/tmp"  # mounted over (this namespace's view only); the old root goes once the new one is in place
    _mount("tmpfs", new, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
    for link, target in links.items():
        os.symlink(target, new + link)
    for path, handle in handles.items():
        if stat.S_ISDIR(os.fstat(handle).st_mode):
            os.makedirs(new + path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(new + path), mode=0o755, exist_ok=True)
            open(new + path, "wb").close()
        _mount(f"/proc/self/fd/{handle}", new + path, None, _MS_BIND | _MS_REC)
        os.close(handle)
        if path != "/dev":
            _read_only(new + path)
    for folder in ("/tmp", "/var/tmp", "/proc"):
        os.makedirs(new + folder, mode=0o755, exist_ok=True)
    # a proc of this PID namespace before the old root goes (a user namespace may mount proc only
    # where one is already fully visible)
    _mount("proc", new + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    number = _PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    os.chdir(new)
    if libc.syscall(number, b".", b".") != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root: {os.strerror(err)}")
    if libc.umount2(b".", 2) != 0:  # MNT_DETACH: the old root (stacked on the new one) is gone
        err = ctypes.get_errno()
        raise OSError(err, f"umount old root: {os.strerror(err)}")
    os.chdir("/")
    _read_only("/")


def _needed_in(paths: list[str], folders: tuple[str, ...]) -> list[str]:
    """The outermost of ``paths`` (resolved) that lie inside one of ``folders``.

    Example:
        >>> _needed_in(["/tmp/course", "/tmp/course/.venv", "/usr/lib/python3"], ("/tmp", "/var/tmp"))
        ['/tmp/course']
    """
    inside = sorted({os.path.realpath(p) for p in paths
                     if any(os.path.realpath(p).startswith(f + os.sep) for f in folders)})
    outermost: list[str] = []
    for path in inside:
        if not any(path == kept or path.startswith(kept + os.sep) for kept in outermost):
            outermost.append(path)
    return outermost


def _enter(config: JailConfig, level: str) -> str:
    """Prepare the namespaces (``level`` "root" or "userns"); return the working folder."""
    source = os.open(config.workdir, os.O_RDONLY | os.O_DIRECTORY)
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
    if level == "root" and config.uid is not None:
        _expose(config.expose)
    if level == "userns":
        _new_root(config.expose)
    # what the child needs (the venv, labkit) may itself live in a scratch folder, e.g. a checkout
    # under /tmp: keep a handle on it, and bind it back into the fresh folder before hiding anything
    kept = {path: os.open(path, os.O_PATH) for path in _needed_in(config.expose, _SCRATCH) if os.path.exists(path)}
    for target in _SCRATCH:
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=512m,mode=1777")
    for path, handle in kept.items():
        if stat.S_ISDIR(os.fstat(handle).st_mode):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "wb").close()
        _mount(f"/proc/self/fd/{handle}", path, None, _MS_BIND | _MS_REC)
        os.close(handle)
    for target in config.hide_dirs:
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0555")
    for target in config.hide_files:
        if os.path.isfile(target):
            _mount("/dev/null", target, None, _MS_BIND)
    # a /proc of this PID namespace only: no host process, command line or environment is visible
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    _loopback_up()
    work = "/tmp/submission"
    os.mkdir(work, 0o700)
    for name in os.listdir(source):
        src = os.open(name, os.O_RDONLY, dir_fd=source)
        with os.fdopen(src, "rb") as fin, open(os.path.join(work, name), "wb") as fout:
            shutil.copyfileobj(fin, fout)
    os.close(source)
    if level == "root" and config.uid is not None:
        # the submission's user owns its folder; the test process (the next user id) shares its group
        for root, dirs, files in os.walk(work):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, config.uid, config.uid)
        os.chmod(work, 0o2770)
    return work


def main(argv: list[str] | None = None) -> int:
    """``python -m labkit.grading.jail CONFIG_JSON -- CHILD...`` (run by :func:`command`)."""
    argv = sys.argv[1:] if argv is None else argv
    raw = json.loads(argv[0])
    config = JailConfig(**{**raw, "limits": Limits(**raw.get("limits", {}))})
    child = argv[argv.index("--") + 1:]
    level = "process" if os.getpid() != 1 else ("root" if config.uid is not None else "userns")
    if os.getpid() == 1:  # inside fresh namespaces (unshare --pid --fork made us their init)
        work = _enter(config, level)
    else:
        work = config.workdir
    os.chdir(work)
    env = dict(os.environ, HOME=work, TMPDIR=work if os.getpid() != 1 else "/tmp")
    # the supervisor (labkit.grading.execute) starts the submission's and the tests' processes, each
    # under its own unprivileged user where there is one, and each sets its own limits
    os.execve(child[0], child, env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
