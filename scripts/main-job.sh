#!/usr/bin/env bash
# README command 1: set up .venv (core install) and run the main job on the embedded default:
# train a Model-SAT router on the shared mmlu_pro zoo with 4 models held out as unseen, evaluate on held-out
# questions, print the comparison table and write the report with plots to runs/mmlu_pro/.
# Extra arguments go to `modelsat run` (e.g. --config modelsat/configs/routerbench.yaml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh core
exec .venv/bin/modelsat run "$@"
