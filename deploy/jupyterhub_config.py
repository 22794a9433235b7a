# JupyterHub for the course on one machine (a lab server), with each student's own course API key.
#
# deploy/one-machine.sh installs it (README, "For administrators", "One machine"): the environment with
# jupyterhub, nbgitpuller and jupyterhub-idle-culler, configurable-http-proxy, the students' group, the TA
# accounts, /etc/labkit/{jupyterhub_config.py,hub.env,keys.csv}. Start it with the environment's own hub:
#   /opt/labkit/bin/jupyterhub -f /etc/labkit/jupyterhub_config.py
# Students log in with their system accounts (PAM) and must be in the students' group.
#
# Settings come from hub.env beside this file (written by one-machine.sh), then the environment:
#   LABKIT_BASE_URL          the course backend, e.g. http://HOST:8008/api/v1. Unset: the hub runs the practice
#                            server as a service on 127.0.0.1:LABKIT_PRACTICE_PORT, its keys from the keys file
#   LABKIT_KEYS_FILE         `username,api_key` lines, readable only by root (default /etc/labkit/keys.csv)
#   LABKIT_HUB_STUDENTS      the students' system group (default students)
#   LABKIT_HUB_ADMINS        TA accounts, comma-separated (each must exist: one-machine.sh creates them)
#   LABKIT_HUB_STATE         the hub's database and cookie secret (default /var/lib/labkit-hub)
#   LABKIT_HUB_PORT          the public port (default 8000); LABKIT_HUB_IDLE_TIMEOUT (seconds, default 3600)
#
# Keys never appear on a command line (every user can read those with `ps`): a student's server gets its
# key in its environment, and the practice service reads the keys file. `make test-hub` runs one-machine.sh
# and this file with real system users; tests/hub/test_deploy_configs.py checks every option below exists.
import csv
import grp
import os
import pwd
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

HERE = Path(globals().get("__file__", "/etc/labkit/jupyterhub_config.py")).resolve().parent


def _settings():
    """hub.env beside this file, then the environment (which wins)."""
    found = {}
    env_file = HERE / "hub.env"
    if env_file.is_file():
        for line in env_file.read_text(encoding="utf-8").splitlines():
            name, eq, value = line.partition("=")
            if eq and not name.strip().startswith("#"):
                found[name.strip()] = value.strip()
    found.update({k: v for k, v in os.environ.items() if k.startswith("LABKIT_")})
    return found


SETTINGS = _settings()
LABKIT_KEYS_FILE = Path(SETTINGS.get("LABKIT_KEYS_FILE", "/etc/labkit/keys.csv"))
PRACTICE_PORT = int(SETTINGS.get("LABKIT_PRACTICE_PORT", "8008"))
LABKIT_BASE_URL = SETTINGS.get("LABKIT_BASE_URL") or f"http://127.0.0.1:{PRACTICE_PORT}/api/v1"
STUDENTS = SETTINGS.get("LABKIT_HUB_STUDENTS", "students")
ADMINS = {name.strip() for name in SETTINGS.get("LABKIT_HUB_ADMINS", "").split(",") if name.strip()}
STATE = Path(SETTINGS.get("LABKIT_HUB_STATE", "/var/lib/labkit-hub"))
IDLE_TIMEOUT = int(SETTINGS.get("LABKIT_HUB_IDLE_TIMEOUT", "3600"))
BIN = Path(sys.executable).parent  # the environment this hub runs from: students' servers run from it too


def labkit_api_key(spawner):
    """The student's own key, read from LABKIT_KEYS_FILE at each spawn (so keys can change without a restart)."""
    name = spawner.user.name
    with LABKIT_KEYS_FILE.open(newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[0].strip() == name:
                return row[1].strip()
    # The message names the user and the file, never a key.
    raise ValueError(f"no course API key for user {name!r} in {LABKIT_KEYS_FILE}: add a line '{name},KEY'")


def private_home(spawner):
    """Before each start: the student's home is theirs alone (0700), whatever useradd made."""
    try:
        entry = pwd.getpwnam(spawner.user.name)
    except KeyError:
        return  # not a system account (another authenticator): nothing of ours to fix
    home = Path(entry.pw_dir)
    if home.is_dir() and home.stat().st_uid == entry.pw_uid and home.stat().st_mode & 0o077:
        home.chmod(0o700)


# What the configuration names must exist: a clear message at start, never a KeyError in the log.
try:
    grp.getgrnam(STUDENTS)
except KeyError:
    raise SystemExit(f"the students' group {STUDENTS!r} does not exist: `groupadd {STUDENTS}` (one-machine.sh "
                     "does), or set LABKIT_HUB_STUDENTS") from None
for admin in sorted(ADMINS):
    try:
        pwd.getpwnam(admin)
    except KeyError:
        raise SystemExit(f"the TA account {admin!r} named in LABKIT_HUB_ADMINS does not exist: `useradd "
                         f"--create-home {admin}` (one-machine.sh does), or remove it") from None

# Each single-user server gets the backend, its student's key and the course language; labkit reads them
# (the key is never shown). PATH: the environment's bin first, so `labkit` works in JupyterLab's terminal.
c.Spawner.environment = {
    "LABKIT_BASE_URL": LABKIT_BASE_URL,
    "LABKIT_API_KEY": labkit_api_key,  # a value may be a function of the spawner
    "LABKIT_LANG": "zh",
    "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
}
c.Spawner.pre_spawn_hook = private_home
c.Spawner.default_url = "/lab"
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
# JupyterLab's terminal: a plain interactive shell keeps the PATH the server started with (the kit's
# environment, so `labkit doctor` works there). Without this it starts a login shell, and Debian's
# /etc/profile resets PATH.
c.Spawner.args = ["--ServerApp.terminado_settings=shell_command=/bin/bash"]
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

c.JupyterHub.bind_url = f"http://:{SETTINGS.get('LABKIT_HUB_PORT', '8000')}"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.command = [str(BIN / "configurable-http-proxy")]
c.LocalAuthenticator.allowed_groups = {STUDENTS}  # the students' system group
c.Authenticator.admin_users = ADMINS

# Stop servers idle for LABKIT_HUB_IDLE_TIMEOUT seconds (jupyterhub-idle-culler, from this environment).
c.JupyterHub.services = [
    {"name": "idle-culler",
     "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={IDLE_TIMEOUT}",
                 f"--cull-every={max(10, min(300, IDLE_TIMEOUT // 2))}"]},
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
     "services": ["idle-culler"]},
]
if not SETTINGS.get("LABKIT_BASE_URL"):
    # No course backend given: the practice server, requiring the students' keys (read from the file, never
    # given on its command line), on this machine only.
    c.JupyterHub.services.append(
        {"name": "labkit-practice",
         "command": [str(BIN / "labkit"), "practice", "--host", "127.0.0.1", "--port", str(PRACTICE_PORT),
                     "--no-fault-header", "--api-key-file", str(LABKIT_KEYS_FILE)]})
