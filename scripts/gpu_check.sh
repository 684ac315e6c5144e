#!/usr/bin/env bash
# Issue 8's GPU measurements in one command, on a GPU machine without network access.
#
# Here, once (a machine with pip access; the wheels are pure Python, so any Python 3 builds them):
#     python3 -m pip wheel --no-deps -w .whl . hydra-core 'omegaconf<2.4' antlr4-python3-runtime==4.9.3
# There, from the repository root, with .whl/ beside it (torch, Lightning, torchmetrics and
# TensorBoard already installed there):
#     OUT=/some/dir bash scripts/gpu_check.sh        # meant to fit 10 minutes (not yet run on a GPU)
#
# Writes to $OUT: gpu.txt (the card, versions), cuda_tests.log (the @cuda tests), and for each
# precision benchmark_<precision>.log and performance_<precision>.md, a copy of
# docs/performance.md with its GPU block filled in. The second precision runs only when the
# first finished within BUDGET_S seconds (default 300), so the whole stays under 10 minutes.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
BUDGET_S=${BUDGET_S:-300}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, lightning, litlab; print('torch', torch.__version__, 'lightning', lightning.__version__)"
} 2>&1 | tee "$OUT/gpu.txt"

python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_performance.py 2>&1 | tee "$OUT/cuda_tests.log"

start=$SECONDS
for precision in bf16-mixed 32-true; do
    if [ "$precision" != bf16-mixed ] && (( SECONDS - start > BUDGET_S )); then
        echo "skipped $precision: the first benchmark took $(( SECONDS - start )) s" | tee -a "$OUT/gpu.txt"
        break
    fi
    cp docs/performance.md "$OUT/performance_$precision.md"
    python3 scripts/benchmark.py --device cuda --precision "$precision" --repeats 1 \
        --out "$OUT/performance_$precision.md" 2>&1 | tee "$OUT/benchmark_$precision.log"
done
