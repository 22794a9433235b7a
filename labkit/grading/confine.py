"""The student's process in a user-namespace sandbox: a PID namespace of its own and no capabilities.

Where the grader is not root (``isolation() == "userns"``) every process of the sandbox is the user
namespace's uid 0: the student's process would hold the namespace's full capabilities (remount,
ptrace, kill …) and share its user with the supervisor and the test process. :func:`confine`, called
by that process before it reads the notebook, makes it as powerless as a grading user is as root:

- a new PID namespace (with its own ``/proc``) whose first process it is: the supervisor and the
  test process are neither visible nor reachable (no signal, ``ptrace`` or ``/proc/<pid>/mem``),
  and everything the notebook forks ends with it;
- every capability gone (bounding, effective, permitted, inheritable and ambient sets, the
  "root keeps its capabilities" rules locked off) and ``no_new_privs``: it cannot undo the sandbox's
  mounts or mount anything, and nothing it ``exec``s gets a privilege back.

A process that cannot be confined stops (fail closed) rather than run the notebook.

The test process, which never runs the student's code, drops its capabilities too
(:func:`drop_capabilities`).

Example:
    >>> from labkit.grading.confine import confine
    >>> confine(keep=(5, 6))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal

__all__ = ["confine", "drop_capabilities", "undumpable"]

_CLONE_NEWNS, _CLONE_NEWPID = 0x00020000, 0x20000000
_PR_SET_PDEATHSIG, _PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 1, 24, 28, 38, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
# noroot, no_setuid_fixup, no_cap_ambient_raise, each locked, and keep_caps locked off
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_CAPABILITY_VERSION_3 = 0x20080522
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
_PR_SET_DUMPABLE = 4


def undumpable() -> None:
    """No other process of this user may ptrace this one or read its memory, environment or file
    descriptors through ``/proc`` (PR_SET_DUMPABLE 0; ``exec`` resets it, so each process sets it).
    Where the call is not available nothing changes.

    Example:
        >>> undumpable()  # doctest: +SKIP
    """
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _check(result: int, what: str) -> None:
    import ctypes

    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"confining a grading process: {what}: {os.strerror(err)}")


def drop_capabilities() -> None:
    """Drop every capability of the calling process for good (and set ``no_new_privs``); raise
    ``OSError`` if any is left."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0), "securebits")
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
        last = int(handle.read())
    for cap in range(last + 1):
        _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap} from the bounding set")
    _check(libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient capabilities")
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable, twice (capabilities 0-31, 32-63): none
    _check(libc.capset(header, data), "capset")
    _verify()


def _verify() -> None:
    """Read back what the kernel says: every capability set empty, no_new_privs on."""
    with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
        status = dict(line.split(":", 1) for line in handle if ":" in line)
    left = {k: status.get(k, "?").strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    if any(v.strip("0") for v in left.values()) or status.get("NoNewPrivs", "").strip() != "1":
        raise OSError(0, f"confining a grading process: capabilities left: {left}")


def confine(keep: tuple[int, ...] = ()) -> None:
    """Move the calling process into a new PID and mount namespace and drop every capability (see the
    module's docstring). The caller continues as the new namespace's first process; the process that
    called it stays behind only to wait for it (it closes ``keep``, the pipes the caller talks through)
    and exits with its status. Call it before any thread is started."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWPID), "unshare")
    pid = os.fork()
    if pid:
        for fd in keep:
            os.close(fd)
        while True:
            try:
                _pid, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
    try:
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "parent-death signal")
        _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "private mounts")
        _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
        drop_capabilities()
    except BaseException as exc:  # noqa: BLE001 - never run the notebook unconfined
        os.write(2, f"{exc}\n".encode("utf-8", "replace"))
        os._exit(70)
