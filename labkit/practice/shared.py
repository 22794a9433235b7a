"""One practice server per user, shared by every kernel of that user.

The embedded default (``labkit.client()`` with no backend configured) calls
:func:`start_embedded_server`. Unless ``LABKIT_PRACTICE_SHARED=0`` asks for a private server in the
calling process, it finds this user's practice server or starts one:

- **Found**: a state file (port, pid, a per-user secret) in ``$XDG_RUNTIME_DIR/labkit`` or
  ``~/.cache/labkit`` (a folder of mode 0700 that this user owns; the file is 0600 and never followed
  through a link). The server is used only once it proves it knows the secret: ``GET /health`` with a
  random challenge must come back with its HMAC, so a stale file (dead pid, port reused by something
  else, another user's impostor) is never trusted; the secret itself never crosses the wire.
- **Started** by the first kernel, under a file lock (two kernels starting at once get one server), as
  a detached process (its own session) that outlives the kernel and its restarts. Each kernel that
  uses it registers its pid; the server ends itself once no registered kernel is alive and no request
  came for ``LABKIT_PRACTICE_IDLE_MINUTES`` (default 10).
- One server per configuration: ``LABKIT_PRACTICE_FAST``, ``…_DIALECT`` and ``…_NO_LEAK`` (and the
  Python and labkit in use) pick the state file, so a paced and a fast server never mix.

This module imports no web framework: a kernel that only finds the server stays light.

Example:
    >>> shared_enabled({"LABKIT_PRACTICE_SHARED": "0"})
    False
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import secrets
import select
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..i18n import _
from .config import PracticeConfig

try:
    import fcntl
except ImportError:  # Windows: no file locks of this kind; each process keeps a private server
    fcntl = None  # type: ignore[assignment]

__all__ = ["CHALLENGE_HEADER", "PROOF_HEADER", "SharedServerError", "shared_enabled", "start_embedded_server",
           "start_shared_server", "state_dir"]

CHALLENGE_HEADER = "x-labkit-challenge"
PROOF_HEADER = "x-labkit-proof"
DEFAULT_IDLE_MINUTES = 10.0
START_TIMEOUT = 30.0


class SharedServerError(RuntimeError):
    """The shared practice server could not be found or started (the message says why)."""


def shared_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the embedded default is this user's shared server (``LABKIT_PRACTICE_SHARED`` not 0).

    Example:
        >>> shared_enabled({})
        True
    """
    env = os.environ if env is None else env
    value = env.get("LABKIT_PRACTICE_SHARED", "").strip().lower()
    return fcntl is not None and value not in ("0", "false", "no", "off")


def start_embedded_server() -> str:
    """The embedded default's base URL: this user's shared practice server (found, or started
    detached), or with ``LABKIT_PRACTICE_SHARED=0`` a private one serving in a daemon thread of this
    process. Configured from the ``LABKIT_PRACTICE_*`` environment (``LABKIT_PRACTICE_FAST=1``
    removes the realistic pacing).

    This is what ``labkit.client()`` calls when no backend is configured; the client side makes
    sure that happens once per process (``labkit.backend.embedded_base_url``). Should the shared
    server be out of reach (a state folder another user owns, say), it says why on stderr and
    starts a private one.

    Example:
        >>> start_embedded_server().startswith("http://127.0.0.1:")  # doctest: +SKIP
        True
    """
    config = PracticeConfig.from_env()
    if shared_enabled():
        try:
            return start_shared_server(config)
        except SharedServerError as exc:
            print(_("labkit: the shared practice server is out of reach ({error}); this kernel starts a "
                    "private one instead (set LABKIT_PRACTICE_SHARED=0 to always do so).").format(error=exc),
                  file=sys.stderr, flush=True)
    from .server import PracticeServer

    return PracticeServer(config).start().base_url


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """This user's folder for the shared server's files: ``$XDG_RUNTIME_DIR/labkit``, else
    ``$XDG_CACHE_HOME/labkit`` or ``~/.cache/labkit``; created with mode 0700. A folder that another
    user owns, or that others may write to, is refused.

    Example:
        >>> state_dir({"XDG_RUNTIME_DIR": "/nonexistent"}).name  # doctest: +SKIP
        'labkit'
    """
    env = os.environ if env is None else env
    candidates: list[Path] = []
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        candidates.append(Path(runtime) / "labkit")
    candidates.append(Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit")
    problems = []
    for folder in candidates:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(folder)
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror}")
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            problems.append(f"{folder} is not a folder of this user")
            continue
        if info.st_mode & 0o077:
            os.chmod(folder, 0o700)
        return folder
    raise SharedServerError("; ".join(problems))


def _config_key(config: PracticeConfig) -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return hashlib.sha256(f"{config!r}|{here}|{sys.executable}".encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path, timeout: float = START_TIMEOUT + 10) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SharedServerError(f"{path} stayed locked for {timeout:.0f} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_private(path: Path) -> dict[str, Any] | None:
    """A JSON file of ours (0600, no link), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
            return None
        try:
            data = json.loads(f.read(64 * 1024))
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def _write_private(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(temp, path)


def _started_at(pid: int) -> str:
    """The process's start time (clock ticks since boot), to tell a pid reused by another process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str = "") -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one of ours
    return not started or _started_at(pid) in ("", started)


def _register(kernels: Path) -> None:
    kernels.mkdir(mode=0o700, exist_ok=True)
    pid = os.getpid()
    (kernels / str(pid)).write_text(_started_at(pid))


def live_kernels(kernels: Path) -> int:
    """How many registered kernels are alive (the dead ones' entries are removed).

    Example:
        >>> live_kernels(Path("/nonexistent"))
        0
    """
    alive = 0
    try:
        entries = list(kernels.iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            pid, started = int(entry.name), entry.read_text()
        except (ValueError, OSError):
            continue
        if _alive(pid, started):
            alive += 1
        else:
            entry.unlink(missing_ok=True)
    return alive


def proof(secret: str, challenge: str) -> str:
    """What the server answers to ``challenge``: HMAC-SHA256 keyed with the secret, in hex.

    Example:
        >>> len(proof("s", "c"))
        64
    """
    return hmac.new(secret.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def _verified(state: dict[str, Any]) -> bool:
    """Whether the server named in ``state`` is running and knows its secret."""
    try:
        port, pid, secret = int(state["port"]), int(state["pid"]), str(state["secret"])
    except (KeyError, TypeError, ValueError):
        return False
    if not _alive(pid):
        return False
    challenge = secrets.token_hex(16)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", "/health", headers={CHALLENGE_HEADER: challenge})
        response = conn.getresponse()
        response.read(1024)
        answer = response.getheader(PROOF_HEADER) or ""
        return response.status == 200 and hmac.compare_digest(answer, proof(secret, challenge))
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _idle_seconds(env: Mapping[str, str]) -> float:
    raw = env.get("LABKIT_PRACTICE_IDLE_MINUTES", "").strip()
    try:
        minutes = float(raw) if raw else DEFAULT_IDLE_MINUTES
    except ValueError:
        raise SharedServerError(f"LABKIT_PRACTICE_IDLE_MINUTES={raw!r} is not a number of minutes "
                                "(e.g. 10)") from None
    return max(0.0, minutes) * 60


def start_shared_server(config: PracticeConfig | None = None, *, folder: Path | None = None,
                        env: Mapping[str, str] | None = None) -> str:
    """This user's practice server for ``config``: found (and verified) or started detached; its base
    URL. This process is registered as one of its kernels. Raises :class:`SharedServerError`.

    Example:
        >>> start_shared_server().startswith("http://127.0.0.1:")  # doctest: +SKIP
        True
    """
    if fcntl is None:
        raise SharedServerError("file locks are not available on this system")
    env = os.environ if env is None else env
    config = config or PracticeConfig.from_env(env)
    folder = folder or state_dir(env)
    key = _config_key(config)
    path = config.base_paths[0].rstrip("/") if config.base_paths else ""
    names = _names(folder, key)
    with _locked(names["lock"]):
        _register(names["kernels"])
        state = _read_private(names["state"])
        if state is None or not _verified(state):
            server_env = {k: v for k, v in env.items()  # the server needs no key of the user's
                          if not k.startswith("OPENAI_") and k not in ("LABKIT_API_KEY", "LABKIT_BASE_URL")}
            state = _spawn(names, _idle_seconds(env), server_env)
            _write_private(names["state"], state)
    return f"http://127.0.0.1:{state['port']}{path}"


def _names(folder: Path, key: str) -> dict[str, Path]:
    base = folder / f"practice-{key}"
    return {"state": base.with_suffix(".json"), "lock": base.with_suffix(".lock"),
            "kernels": base.with_suffix(".kernels"), "log": base.with_suffix(".log")}


def _spawn(names: dict[str, Path], idle: float, env: dict[str, str]) -> dict[str, Any]:
    secret = secrets.token_hex(32)
    log_fd = os.open(names["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.practice.shared"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log_fd, cwd=names["state"].parent, env=env, start_new_session=True, close_fds=True)
    finally:
        os.close(log_fd)
    assert proc.stdin is not None and proc.stdout is not None
    orders = {"secret": secret, "idle_seconds": idle, **{k: str(v) for k, v in names.items()}}
    proc.stdin.write(json.dumps(orders).encode() + b"\n")
    proc.stdin.close()
    line = b""
    deadline = time.monotonic() + START_TIMEOUT
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _w, _x = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(proc.stdout.fileno(), 256)
        if not chunk:
            break
        line += chunk
    proc.stdout.close()
    proc.wait(10)  # the launcher exits once the server (its child) is running
    try:
        port, pid = (int(x) for x in line.split())
    except ValueError:
        raise SharedServerError(f"the practice server did not start within {START_TIMEOUT:.0f} s: see "
                                f"{names['log']}") from None
    return {"port": port, "pid": pid, "secret": secret, "started": time.time()}


# --- the server process ------------------------------------------------------------------------------

class _Shared:
    """ASGI middleware of the shared server: proves the secret on ``GET /health`` with a challenge,
    and notes when the last request came."""

    def __init__(self, app: Any, secret: str) -> None:
        self.app, self.secret, self.last = app, secret, time.monotonic()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.last = time.monotonic()
            if scope["path"] == "/health":
                challenge = dict(scope.get("headers") or []).get(CHALLENGE_HEADER.encode(), b"")
                if challenge:
                    answer = proof(self.secret, challenge.decode("latin-1")).encode()
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [(PROOF_HEADER.encode(), answer), (b"content-length", b"0")]})
                    await send({"type": "http.response.body", "body": b""})
                    return
        await self.app(scope, receive, send)


def _serve(orders: dict[str, Any]) -> None:
    """Run in the detached process: serve, report ``PORT PID`` on stdout, end when idle."""
    from .connections import connection_ceiling
    from .server import PracticeServer

    config = PracticeConfig.from_env()
    connection_ceiling(config.max_connections, raise_soft_limit=True)
    middleware: list[_Shared] = []

    def wrap(app: Any) -> Any:
        middleware.append(_Shared(app, orders["secret"]))
        return middleware[0]

    server = PracticeServer(config, wrap=wrap).start()
    os.write(1, f"{server.port} {os.getpid()}\n".encode())
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    idle = float(orders["idle_seconds"])
    state, lock, kernels = Path(orders["state"]), Path(orders["lock"]), Path(orders["kernels"])
    every = min(30.0, max(0.2, idle / 4))
    while True:
        time.sleep(every)
        if time.monotonic() - middleware[0].last < idle:
            continue
        with _locked(lock):
            if live_kernels(kernels) or time.monotonic() - middleware[0].last < idle:
                continue
            current = _read_private(state)
            if current is not None and current.get("pid") == os.getpid():
                state.unlink()  # ours: the next kernel starts a new server
            break
    print(f"practice server {os.getpid()}: no kernel alive and no request for {idle:.0f} s: ending",
          file=sys.stderr, flush=True)
    server.stop()


def _main() -> None:
    orders = json.loads(sys.stdin.readline())
    if os.fork():  # the launcher exits at once; the server is nobody's child but init's
        os._exit(0)
    _serve(orders)


if __name__ == "__main__":
    _main()
