#!/usr/bin/env bash
# A real JupyterHub on loopback (tests/hub), installed by the README's own recipe, deploy/one-machine.sh:
#   - jupyterhub 6, oauthenticator, Playwright (Python) into .venv, for the test driver and the config checks;
#   - configurable-http-proxy 5 from npm into .hub/ (git-ignored), handed to the recipe;
#   - Debian's chromium with apt-get when it is missing (never `playwright install`);
#   - then deploy/one-machine.sh as root: the hub's environment at $HUBTEST_PREFIX (default /opt/labkit-hub-test,
#     kept between runs like .hub/), its configuration, keys file and state in a fresh folder, the students'
#     group and a TA account (both removed at the end if this run created them). The tests add real system
#     users (removed by them) and spawn their servers as those users.
# Everything runs under one limit (LABKIT_HUB_TEST_LIMIT, default 600 s). Usage: bash scripts/test-hub.sh [pytest args]
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export DEV_PY="${DEV_PYTHON:-$REPO_ROOT/.venv/bin/python}"
export LABKIT_CHP="${LABKIT_CHP:-$REPO_ROOT/.hub/node_modules/.bin/configurable-http-proxy}"
export LABKIT_CHROMIUM="${LABKIT_CHROMIUM:-/usr/bin/chromium}"
LIMIT="${LABKIT_HUB_TEST_LIMIT:-600}"

if [[ ! -x "$DEV_PY" ]]; then
    echo "[test-hub] ERROR: no dev venv at $DEV_PY: run 'make test' (or 'make lab') once to create it" >&2
    exit 1
fi

run_all() {
    set -euo pipefail
    local t0=$SECONDS
    if ! "$DEV_PY" -c "import jupyterhub, nbgitpuller, oauthenticator, playwright, yaml" 2>/dev/null; then
        echo "[test-hub] installing jupyterhub 6, nbgitpuller, oauthenticator, playwright into $(dirname "$(dirname "$DEV_PY")")"
        "$DEV_PY" -m pip install --quiet 'jupyterhub>=6,<7' 'nbgitpuller>=1.2' 'oauthenticator>=17' 'playwright>=1.40' 'pyyaml>=6'
    fi
    if [[ "$(id -u)" != 0 ]]; then
        echo "[test-hub] ERROR: run as root: it installs the hub as an admin would and adds system users" >&2
        exit 1
    fi
    if [[ ! -x "$LABKIT_CHP" ]] && ! command -v npm >/dev/null; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            echo "[test-hub] installing Debian's nodejs and npm (for configurable-http-proxy)"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
        else
            echo "[test-hub] ERROR: npm is missing: 'sudo apt-get install nodejs npm' (or set LABKIT_CHP)" >&2
            exit 1
        fi
    fi
    if [[ ! -x "$LABKIT_CHP" ]]; then
        echo "[test-hub] installing configurable-http-proxy 5 into .hub/"
        mkdir -p .hub
        (cd .hub && npm install --no-audit --no-fund --loglevel=error configurable-http-proxy@5)
    fi
    if [[ ! -x "$LABKIT_CHROMIUM" ]]; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            echo "[test-hub] installing Debian's chromium"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        else
            echo "[test-hub] ERROR: no browser at $LABKIT_CHROMIUM: 'sudo apt-get install chromium' (or set LABKIT_CHROMIUM)" >&2
            exit 1
        fi
    fi
    echo "[test-hub] tools ready after $((SECONDS - t0)) s"
    t0=$SECONDS
    export HUBTEST_PREFIX="${HUBTEST_PREFIX:-/opt/labkit-hub-test}"
    export HUBTEST_WORK; HUBTEST_WORK="$(mktemp -d /tmp/labkit-hub-test.XXXXXX)"
    chmod 0755 "$HUBTEST_WORK"  # the students' homes and the course repository are below it
    export HUBTEST_STUDENTS="lkt-students" HUBTEST_TA="lkt-ta"
    made_group="" made_ta=""
    getent group "$HUBTEST_STUDENTS" >/dev/null || made_group=1
    id "$HUBTEST_TA" >/dev/null 2>&1 || made_ta=1
    cleanup() {
        [[ -n "$made_ta" ]] && userdel --remove "$HUBTEST_TA" 2>/dev/null || true
        [[ -n "$made_group" ]] && groupdel "$HUBTEST_STUDENTS" 2>/dev/null || true
        [[ "$HUBTEST_WORK" == /tmp/labkit-hub-test.* ]] && rm -rf "$HUBTEST_WORK"
    }
    trap cleanup EXIT
    LABKIT_HUB_PREFIX="$HUBTEST_PREFIX" LABKIT_HUB_ETC="$HUBTEST_WORK/etc" LABKIT_HUB_STATE="$HUBTEST_WORK/state" \
        LABKIT_HUB_STUDENTS="$HUBTEST_STUDENTS" LABKIT_HUB_ADMINS="$HUBTEST_TA" LABKIT_HUB_CHP="$LABKIT_CHP" \
        bash deploy/one-machine.sh
    echo "[test-hub] the recipe (deploy/one-machine.sh) took $((SECONDS - t0)) s"
    t0=$SECONDS
    "$DEV_PY" -m pytest tests/hub -p no:cacheprovider -o addopts="" -o timeout=0 -rs "$@"
    echo "[test-hub] tests took $((SECONDS - t0)) s"
}
export -f run_all

# `timeout` ends the whole run (installers, hub, browser, tests) if it goes over the limit; the tests'
# own finalizers stop the hub, its proxy and the students' servers when they fail.
exec timeout --kill-after=20 "$LIMIT" bash -c 'run_all "$@"' run_all "$@"
