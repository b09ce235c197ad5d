#!/usr/bin/env bash
# The device check (see benchmarks/gpu_check.py for every step):
#   bash benchmarks/gpu_check.sh --out reports/cost   # GPU machine: at most 8 minutes
#   bash benchmarks/gpu_check.sh --dry-run --out DIR  # anywhere: the CPU path, < 1 minute
# Writes <out>/gpu_check-<device>.json and .md after every measurement (default reports/cost).
# PYTHON=... picks the interpreter (an offline install: benchmarks/wheelhouse.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
export HF_HUB_OFFLINE=1
# 8 minutes at most, whatever happens: the script also skips steps past its own 450-s budget.
exec timeout --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-480}" "$python" benchmarks/gpu_check.py "$@"
