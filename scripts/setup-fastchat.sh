#!/usr/bin/env bash
# Install FastChat 0.2.36's controller and OpenAI-compatible API server into .venv-fastchat/ (repo root).
#
# FastChat 0.2.36 was written for pydantic 1 and a fastapi of its time (see shared/captures/README.md):
# with pydantic 2 its API server does not start. Only what `fastchat.serve.controller`,
# `fastchat.serve.openai_api_server` and our worker (scripts/fastchat_worker.py) import is installed:
# fschat itself without its dependency list (which drags in gradio-era extras), pydantic 1, fastapi
# 0.110.3, uvicorn, aiohttp, httpx, requests, shortuuid, tiktoken and numpy; Pillow for the worker. No
# torch: the controller and the API server never load a model.
#
# Idempotent: a stamp file records a finished install; a second run does nothing.
# Deletes only what it created: with FORCE=1 it removes the venv only if this script made it.
# Usage: bash scripts/setup-fastchat.sh        (FASTCHAT_VENV=/path to install elsewhere, FORCE=1 to reinstall)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FASTCHAT_VENV:-$REPO_ROOT/.venv-fastchat}"
PACKAGES=(
    "fschat==0.2.36"
    "pydantic>=1.10,<2"
    "fastapi==0.110.3"
    "uvicorn>=0.29,<0.35"
    "aiohttp>=3.9,<4"
    "httpx>=0.27,<0.29"
    "requests>=2.31,<3"
    "shortuuid>=1.0,<2"
    "tiktoken>=0.7,<1"
    "numpy>=1.26,<3"
    "pillow>=10.3,<13"
)
STAMP_VERSION="${PACKAGES[*]} v1"
STAMP="$VENV/.labkit-setup-done"
MARKER="$VENV/.labkit-created"  # written right after this script creates the venv

log() { printf '[setup-fastchat] %s\n' "$*"; }
die() { printf '[setup-fastchat] ERROR: %s\n' "$*" >&2; exit 1; }

# Refuse paths a mistake could make dangerous: empty, root, home, the repository itself or a parent.
check_target() {
    local target="$1" resolved
    [[ -n "$target" ]] || die "the venv path is empty: set FASTCHAT_VENV to a new folder such as $REPO_ROOT/.venv-fastchat"
    resolved="$(realpath -m -- "$target")"
    case "$resolved" in
        / | "$(realpath -m -- "${HOME:-/}")" | "$REPO_ROOT")
            die "refusing to use '$target' (resolves to $resolved) as the venv: choose a new folder such as $REPO_ROOT/.venv-fastchat" ;;
    esac
    if [[ "$REPO_ROOT/" == "$resolved/"* ]]; then
        die "refusing to use '$target': it contains the repository ($REPO_ROOT); choose a new folder such as $REPO_ROOT/.venv-fastchat"
    fi
    if [[ -e "$resolved" && ! -f "$resolved/$(basename "$MARKER")" && -n "$(ls -A -- "$resolved" 2>/dev/null)" ]]; then
        die "'$resolved' exists, is not empty and was not made by this script: remove it yourself or set FASTCHAT_VENV to a new folder"
    fi
}
check_target "$VENV"

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_VERSION" ]]; then
    log "already installed in $VENV (FORCE=1 to reinstall)"
    exit 0
fi

if [[ "${FORCE:-0}" == "1" && -f "$MARKER" ]]; then
    log "FORCE=1: removing $VENV (made by this script)"
    rm -rf -- "$VENV"
fi

find_python() {
    local cand
    for cand in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
        [[ -n "$cand" ]] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info < (3, 13) else 1)' 2>/dev/null; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

PY="$(find_python)" || die "FastChat 0.2.36 with pydantic 1 needs Python 3.10-3.12; none found on PATH (set PYTHON=/path/to/python3.11)"
START=$SECONDS

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV with $("$PY" --version)"
    "$PY" -m venv "$VENV"
    : >"$MARKER"
fi

log "installing ${PACKAGES[*]}"
# fschat's own dependency list (markdown2, nh3, rich, prompt-toolkit, unpinned pydantic/fastapi) is for
# its CLI and web UI; --no-deps keeps it out and the pins above give the versions 0.2.36 runs with.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]:1}"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${PACKAGES[0]}"

log "checking the install"
LOGDIR="$(mktemp -d)" "$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import os, shutil, sys
import fastchat.serve.controller, fastchat.serve.openai_api_server, fastchat.serve.base_model_worker  # noqa: F401
import PIL  # noqa: F401
shutil.rmtree(os.environ["LOGDIR"])  # the loggers above write their (empty) files there
# FastChat's loggers replace sys.stdout; write to the real one.
print(f"[setup-fastchat] fschat {md.version('fschat')}, pydantic {md.version('pydantic')}, "
      f"fastapi {md.version('fastapi')}, starlette {md.version('starlette')}, uvicorn {md.version('uvicorn')}",
      file=sys.__stdout__)
EOF

echo "$STAMP_VERSION" >"$STAMP"
log "done in $((SECONDS - START)) s; venv size $(du -sh "$VENV" | cut -f1)"
