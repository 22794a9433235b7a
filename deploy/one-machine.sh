#!/usr/bin/env bash
# JupyterHub for the course on one machine (a lab server): README, "For administrators", "One machine".
# Run as root from a checkout of labkit:   sudo bash deploy/one-machine.sh
# It installs everything the hub uses and creates everything its configuration names:
#   - a virtual environment at $LABKIT_HUB_PREFIX (default /opt/labkit; never under /root, which students
#     cannot enter) made from a Python students can execute, with labkit and its `lab` and `hub` extras
#     (JupyterLab, jupyterhub, nbgitpuller, jupyterhub-idle-culler), installed as a copy, not editable;
#   - configurable-http-proxy (npm) into $LABKIT_HUB_PREFIX/share/chp, with nodejs/npm from apt-get if missing;
#   - the students' group ($LABKIT_HUB_STUDENTS, default students) and the TA accounts named in
#     $LABKIT_HUB_ADMINS (comma-separated, default none), homes 0700;
#   - $LABKIT_HUB_ETC (default /etc/labkit): jupyterhub_config.py, hub.env (the settings below, read by the
#     config) and keys.csv (`username,key` lines, mode 0600, root only: fill it in);
#   - $LABKIT_HUB_STATE (default /var/lib/labkit-hub, 0700): the hub's database and cookie secret.
# Then start the hub with:  $LABKIT_HUB_PREFIX/bin/jupyterhub -f $LABKIT_HUB_ETC/jupyterhub_config.py
# Running it again updates labkit and keeps keys.csv and the accounts. `make test-hub` runs this script.
#
# Settings (environment; written to hub.env):
#   LABKIT_BASE_URL        the course backend, e.g. http://HOST:8008/api/v1. Unset: the hub runs
#                          `labkit practice --api-key-file keys.csv` on 127.0.0.1:$LABKIT_PRACTICE_PORT (8008)
#   LABKIT_HUB_IDLE_TIMEOUT  seconds before an idle server is stopped (default 3600)
#   LABKIT_HUB_PORT        the hub's public port (default 8000)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${LABKIT_HUB_PREFIX:-/opt/labkit}"
ETC="${LABKIT_HUB_ETC:-/etc/labkit}"
STATE="${LABKIT_HUB_STATE:-/var/lib/labkit-hub}"
STUDENTS="${LABKIT_HUB_STUDENTS:-students}"
ADMINS="${LABKIT_HUB_ADMINS:-}"
PYTHON="${LABKIT_HUB_PYTHON:-/usr/bin/python3}"
SOURCE="${LABKIT_HUB_SOURCE:-$REPO_ROOT}"   # a checkout of labkit
CHP="${LABKIT_HUB_CHP:-}"   # an existing configurable-http-proxy to use instead of installing one

say() { echo "[one-machine] $*"; }
die() { echo "[one-machine] ERROR: $*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it creates accounts, $ETC and $PREFIX): sudo bash $0"
for path in "$PREFIX" "$ETC" "$STATE"; do
    case "$(realpath -m "$path")" in
        /|/root|/root/*|/home|/usr|/etc|/var|/opt|/tmp) die "refusing $path: give a folder of its own";;
    esac
done
case "$(realpath -m "$PREFIX")" in
    /root/*|/home/*) die "$PREFIX is inside a home folder that students cannot enter: use e.g. /opt/labkit";;
esac
real_python="$(realpath "$(command -v "$PYTHON")")" || die "no Python at $PYTHON (set LABKIT_HUB_PYTHON)"
case "$real_python" in
    /root/*) die "$PYTHON is under /root, which students cannot execute: use Debian's /usr/bin/python3";;
esac
"$PYTHON" -c 'import sys, venv; assert sys.version_info >= (3, 10)' 2>/dev/null \
    || die "$PYTHON must be Python >= 3.10 with venv (apt-get install python3-venv)"

# 1. The environment, readable and executable by everyone.
fresh=""
if [[ ! -x "$PREFIX/bin/python" ]]; then
    say "creating $PREFIX from $real_python"
    "$PYTHON" -m venv "$PREFIX"
    fresh=1
fi
say "installing labkit[lab,hub] from $SOURCE into $PREFIX"
# Built from a copy of what the package needs, so the checkout gets no build/ or *.egg-info folder, and
# installed as a copy (not editable): nothing in the hub depends on this checkout afterwards.
build_dir="$(mktemp -d /tmp/labkit-hub-build.XXXXXX)"
trap 'rm -rf "$build_dir"' EXIT
cp -r "$SOURCE/pyproject.toml" "$SOURCE/README.md" "$SOURCE/labkit" "$build_dir/"
find "$build_dir" -name __pycache__ -prune -exec rm -rf {} +
"$PREFIX/bin/python" -m pip install --quiet "labkit[lab,hub] @ file://$build_dir" 2>&1 \
    | grep -v "^WARNING: Location" || true
if [[ -z "$fresh" ]]; then  # an update: the same version number with new code, so reinstall labkit itself
    "$PREFIX/bin/python" -m pip install --quiet --no-deps --force-reinstall "$build_dir" 2>&1 \
        | grep -v "^WARNING: Location" || true
fi
"$PREFIX/bin/python" -c "import labkit, jupyterhub, nbgitpuller, jupyterhub_idle_culler" \
    || die "the install into $PREFIX is incomplete (see pip's messages above)"
chmod -R a+rX "$PREFIX"

# 2. The proxy.
if [[ -z "$CHP" ]]; then
    if ! command -v npm >/dev/null; then
        say "installing Debian's nodejs and npm (for configurable-http-proxy)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    if [[ ! -x "$PREFIX/share/chp/node_modules/.bin/configurable-http-proxy" ]]; then
        say "installing configurable-http-proxy 5 into $PREFIX/share/chp"
        mkdir -p "$PREFIX/share/chp"
        npm install --prefix "$PREFIX/share/chp" --no-audit --no-fund --loglevel=error configurable-http-proxy@5
    fi
    CHP="$PREFIX/share/chp/node_modules/.bin/configurable-http-proxy"
fi
ln -sf "$(realpath "$CHP")" "$PREFIX/bin/configurable-http-proxy"

# 3. The accounts the configuration names.
getent group "$STUDENTS" >/dev/null || { say "creating the group $STUDENTS"; groupadd "$STUDENTS"; }
IFS=',' read -r -a admin_list <<< "$ADMINS"
for admin in "${admin_list[@]}"; do
    [[ -z "$admin" ]] && continue
    if ! id "$admin" >/dev/null 2>&1; then
        say "creating the TA account $admin (set its password: passwd $admin)"
        useradd --create-home --key HOME_MODE=0700 --shell /bin/bash "$admin"
    fi
done

# 4. Configuration, keys and state.
install -d -m 0755 "$ETC"
install -d -m 0700 "$STATE"
install -m 0644 "$REPO_ROOT/deploy/jupyterhub_config.py" "$ETC/jupyterhub_config.py"
if [[ ! -e "$ETC/keys.csv" ]]; then
    printf '# username,api_key: one line per student (read at each spawn)\n' > "$ETC/keys.csv"
fi
chown root:root "$ETC/keys.csv"
chmod 0600 "$ETC/keys.csv"
{
    echo "# Written by deploy/one-machine.sh; read by $ETC/jupyterhub_config.py."
    echo "LABKIT_KEYS_FILE=$ETC/keys.csv"
    echo "LABKIT_HUB_STATE=$STATE"
    echo "LABKIT_HUB_STUDENTS=$STUDENTS"
    echo "LABKIT_HUB_ADMINS=$ADMINS"
    echo "LABKIT_HUB_PORT=${LABKIT_HUB_PORT:-8000}"
    echo "LABKIT_HUB_IDLE_TIMEOUT=${LABKIT_HUB_IDLE_TIMEOUT:-3600}"
    [[ -n "${LABKIT_BASE_URL:-}" ]] && echo "LABKIT_BASE_URL=$LABKIT_BASE_URL"
    echo "LABKIT_PRACTICE_PORT=${LABKIT_PRACTICE_PORT:-8008}"
} > "$ETC/hub.env"
chmod 0644 "$ETC/hub.env"

say "done. Add students with:  useradd --create-home --key HOME_MODE=0700 --groups $STUDENTS NAME; passwd NAME"
say "put each student's key in $ETC/keys.csv (NAME,KEY), then start the hub:"
say "    $PREFIX/bin/jupyterhub -f $ETC/jupyterhub_config.py"
