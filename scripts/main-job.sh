#!/usr/bin/env bash
# README command 1: set up .venv (library + Ray Serve) and run the main job on the embedded default:
# train a Model-SAT router on the shared mmlu_pro zoo with 4 models held out as unseen, evaluate on held-out
# questions, then serve the zoo's 24 recorded models behind the router on a local Ray Serve and answer the
# held-out instructions through the OpenAI-compatible API; print the tables and write the report with plots
# to runs/mmlu_pro/.
# Extra arguments go to `modelsat run` (e.g. --config modelsat/configs/routerbench.yaml). Without a data root
# ($MODELSAT_DATA, ../shared/data or data/) it stops and says how to get data; --fetch-data downloads the public
# MMLU-Pro outcomes into data/mmlu_pro first (README, "Bring your own outcomes").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh serve
exec .venv/bin/modelsat run --serve "$@"
