#!/usr/bin/env bash
# The device check (see benchmarks/gpu_check.py for every step):
#   bash benchmarks/gpu_check.sh --out reports/cost   # GPU machine: at most 8 minutes
#   bash benchmarks/gpu_check.sh --dry-run --out DIR  # anywhere: the CPU path, < 1 minute
#   bash benchmarks/gpu_check.sh --wheelhouse DIR ... # an offline machine with its own torch:
#                                                     # installs DIR's wheels for this run first
# Writes <out>/gpu_check-<device>.json and .md after every measurement (default reports/cost).
# PYTHON=... picks the interpreter (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
check_args=()
unset wheelhouse
while (($#)); do
  case "$1" in
    --wheelhouse)
      if (($# < 2)); then echo "error: --wheelhouse needs a folder of wheels" >&2; exit 2; fi
      wheelhouse="$2"; shift 2 ;;
    --wheelhouse=*) wheelhouse="${1#*=}"; shift ;;
    *) check_args+=("$1"); shift ;;
  esac
done
if [[ -n "${wheelhouse+set}" ]]; then
  if ! compgen -G "$wheelhouse/*.whl" >/dev/null; then
    echo "error: --wheelhouse '$wheelhouse' holds no wheels: make the folder on a machine with" \
      "network (make wheelhouse PY=3.12, see benchmarks/wheelhouse.py) and copy it here" >&2
    exit 2
  fi
  # --target, not a venv: a venv made from a Python that is itself a venv (GPU images keep torch
  # in one) would not see that torch; --no-deps: the folder already holds everything the machine
  # lacks, and pip would otherwise insist on opencv-python beside the machine's headless OpenCV.
  # Installed afresh each time into the checkout's ignored build/ (kept: the check runs by exec).
  site="$PWD/build/gpu-check-site"
  rm -rf "$site"
  "$python" -m pip install --isolated --quiet --disable-pip-version-check --no-index --no-deps \
    --no-compile --target "$site" "$wheelhouse"/*.whl
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export HF_HUB_OFFLINE=1
# 8 minutes at most for the check (the install above comes first), whatever happens: the script
# also skips steps past its own 450-s budget. exec: a signal to this script reaches the check.
exec timeout --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-480}" "$python" benchmarks/gpu_check.py \
  ${check_args[@]+"${check_args[@]}"}
