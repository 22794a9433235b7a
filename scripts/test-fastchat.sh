#!/usr/bin/env bash
# Tests against FastChat 0.2.36's real front end: its controller and openai_api_server (installed by
# scripts/setup-fastchat.sh into .venv-fastchat/) plus our model worker (scripts/fastchat_worker.py),
# each on a free loopback port in its own process group, logs in a temporary folder. Then tests/fastchat
# runs with labkit's .venv python. The three servers are always stopped and the folder removed (trap),
# also when the run fails or is interrupted. Everything runs under one 600-second limit.
# Usage: bash scripts/test-fastchat.sh [pytest args]     (KEEP_LOGS=1 keeps the log folder)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
LIMIT="${LABKIT_FASTCHAT_TEST_LIMIT:-600}"

# The whole run (install, servers, tests) happens in a copy of this script under `timeout`; on time-out
# it gets SIGTERM and its trap stops the servers. `timeout` runs in a process group of its own, so a
# Ctrl-C here is passed on to it as SIGTERM, and this waits until the copy has cleaned up.
if [[ -z "${_LABKIT_FASTCHAT_TIMED:-}" ]]; then
    export _LABKIT_FASTCHAT_TIMED=1
    timeout --kill-after=20 "$LIMIT" bash "${BASH_SOURCE[0]}" "$@" &
    TIMED=$!
    trap 'kill -TERM "$TIMED" 2>/dev/null || true' INT TERM
    while true; do
        RC=0
        wait "$TIMED" || RC=$?
        kill -0 "$TIMED" 2>/dev/null || exit "$RC"
    done
fi

DEV_PY="${DEV_PYTHON:-$REPO_ROOT/.venv/bin/python}"
FC_VENV="${FASTCHAT_VENV:-$REPO_ROOT/.venv-fastchat}"
FC_PY="$FC_VENV/bin/python"
MODEL_NAME="llava-v1.6-34b"
WORK=""
PIDS=()

log() { printf '[test-fastchat] %s\n' "$*"; }

if [[ ! -x "$DEV_PY" ]]; then
    echo "[test-fastchat] ERROR: no dev venv at $DEV_PY: run 'make test' (or 'make lab') once to create it" >&2
    exit 1
fi

show_logs() {
    local f
    for f in "$WORK"/*.out; do
        [[ -f "$f" ]] || continue
        echo "----- last lines of $f" >&2
        tail -n 30 "$f" >&2
    done
}

# Stop the servers this run started (their process groups), then remove the folder this run made.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    if [[ "${KEEP_LOGS:-0}" == "1" && -n "$WORK" ]]; then
        log "logs kept in $WORK"
    elif [[ -n "$WORK" && -d "$WORK" && "$(basename "$WORK")" == labkit-fastchat.* ]]; then
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# wait_for NAME URL EXPECTED SECONDS [METHOD]: poll until URL answers 200 with EXPECTED in the body.
wait_for() {
    local name="$1" url="$2" expected="$3" limit="$4" method="${5:-GET}"
    local probe='
import sys, time, urllib.request
url, expected, limit, method = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=5) as resp:
            if resp.status == 200 and expected.encode() in resp.read():
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.3)
sys.exit(1)'
    if ! "$FC_PY" -c "$probe" "$url" "$expected" "$limit" "$method"; then
        echo "[test-fastchat] ERROR: $name not ready at $url after $limit s" >&2
        show_logs
        return 1
    fi
}

T_ALL=$SECONDS
FASTCHAT_VENV="$FC_VENV" bash scripts/setup-fastchat.sh
log "FastChat venv ready after $((SECONDS - T_ALL)) s"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/labkit-fastchat.XXXXXX")"
read -r CPORT WPORT APORT < <("$FC_PY" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
CONTROLLER="http://127.0.0.1:$CPORT"
API="http://127.0.0.1:$APORT"

T0=$SECONDS
# LOGDIR: where FastChat's loggers write their files. setsid: each server leads its own process group.
LOGDIR="$WORK" setsid "$FC_PY" -m fastchat.serve.controller --host 127.0.0.1 --port "$CPORT" \
    >"$WORK/controller.out" 2>&1 &
PIDS+=($!)
wait_for "controller" "$CONTROLLER/test_connection" "" 60
LOGDIR="$WORK" FASTCHAT_WORKER_HEART_BEAT_INTERVAL=3 setsid "$FC_PY" scripts/fastchat_worker.py \
    --host 127.0.0.1 --port "$WPORT" --controller-address "$CONTROLLER" --model-names "$MODEL_NAME" \
    >"$WORK/worker.out" 2>&1 &
PIDS+=($!)
wait_for "worker registration" "$CONTROLLER/list_models" "$MODEL_NAME" 60 POST
LOGDIR="$WORK" setsid "$FC_PY" -m fastchat.serve.openai_api_server --host 127.0.0.1 --port "$APORT" \
    --controller-address "$CONTROLLER" >"$WORK/api_server.out" 2>&1 &
PIDS+=($!)
wait_for "API server" "$API/v1/models" "$MODEL_NAME" 60
log "controller, worker and API server ready after $((SECONDS - T0)) s (logs in $WORK)"

T0=$SECONDS
RC=0
FASTCHAT_TEST_BASE_URL="$API/v1" FASTCHAT_TEST_CONTROLLER="$CONTROLLER" FASTCHAT_TEST_LOGS="$WORK" \
    FASTCHAT_TEST_PYTHON="$FC_PY" \
    "$DEV_PY" -m pytest tests/fastchat -p no:cacheprovider -o addopts="" -o timeout=0 -rsxX "$@" || RC=$?
log "tests took $((SECONDS - T0)) s; whole run $((SECONDS - T_ALL)) s"
if [[ $RC -ne 0 ]]; then
    show_logs
fi
exit $RC
