# JupyterHub for the course on one machine (a lab server), with each student's own course API key.
#
# Copy to /etc/jupyterhub/jupyterhub_config.py and run `jupyterhub -f /etc/jupyterhub/jupyterhub_config.py`
# from the environment the kit is installed in (`pip install "labkit[lab] jupyterhub"`, plus
# `npm install -g configurable-http-proxy`). Students log in with their system accounts (PAM).
#
#   LABKIT_BASE_URL   the course backend, e.g. http://HOST:8008/api/v1 (default: a practice server
#                     on this machine, `labkit practice --api-key ... --host 127.0.0.1`)
#   LABKIT_KEYS_FILE  CSV lines `username,api_key`, readable only by the hub (default /etc/labkit/keys.csv)
#
# tests/hub/ runs a real JupyterHub with this file loaded (it only swaps in a test login, a
# temporary folder and loopback ports), and tests/hub/test_deploy_jupyterhub_config.py checks that
# every option below is one JupyterHub 6 knows.
import csv
import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

LABKIT_BASE_URL = os.environ.get("LABKIT_BASE_URL", "http://127.0.0.1:8008/api/v1")
LABKIT_KEYS_FILE = Path(os.environ.get("LABKIT_KEYS_FILE", "/etc/labkit/keys.csv"))


def labkit_api_key(spawner):
    """The student's own key, read from LABKIT_KEYS_FILE at each spawn (so keys can change without a restart)."""
    name = spawner.user.name
    with LABKIT_KEYS_FILE.open(newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[0].strip() == name:
                return row[1].strip()
    # The message names the user and the file, never a key.
    raise ValueError(f"no course API key for user {name!r} in {LABKIT_KEYS_FILE}: add a line '{name},KEY'")


# Each single-user server gets the backend and its student's key; labkit reads them (the key is never shown).
c.Spawner.environment = {
    "LABKIT_BASE_URL": LABKIT_BASE_URL,
    "LABKIT_API_KEY": labkit_api_key,  # a value may be a function of the spawner
}
c.Spawner.default_url = "/lab"
c.Spawner.cmd = ["jupyterhub-singleuser"]
# JupyterLab's terminal: a plain interactive shell keeps the PATH the server started with (the kit's
# environment, so `labkit doctor` works there). Without this it starts a login shell, and Debian's
# /etc/profile resets PATH.
c.Spawner.args = ["--ServerApp.terminado_settings=shell_command=/bin/bash"]
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

c.JupyterHub.bind_url = "http://:8000"
c.LocalAuthenticator.allowed_groups = {"students"}  # the students' system group
c.Authenticator.admin_users = {"ta"}

# Stop servers idle for an hour (pip install jupyterhub-idle-culler).
c.JupyterHub.services = [
    {"name": "idle-culler", "command": ["python3", "-m", "jupyterhub_idle_culler", "--timeout=3600"]},
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
     "services": ["idle-culler"]},
]
