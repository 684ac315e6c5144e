#!/usr/bin/env bash
# Issue 8's GPU measurements in one command, on a GPU machine without network access.
#
# Here, once (a machine with pip access; the wheels are pure Python, so any Python 3 builds them):
#     python3 -m pip wheel --no-deps -w .whl . hydra-core 'omegaconf<2.4' antlr4-python3-runtime==4.9.3
# There, from the repository root, with .whl/ carried beside it (it is git-ignored) and torch,
# Lightning, torchmetrics, TensorBoard, Pillow, scikit-learn and pytest already installed in the
# environment of `python3` (as on this workplace's GPU machines):
#     OUT=/some/dir bash scripts/gpu_check.sh
#
# Writes to $OUT: gpu.txt (the card, versions, each step's exit status), cuda_tests.log (the
# @cuda tests), and per precision benchmark_<precision>.log and performance_<precision>.md, a
# copy of docs/performance.md with its GPU block filled in. Everything stops by LIMIT_S seconds
# after the start (default 570): each benchmark gets what is left, and the second precision
# starts only if the first one's time still fits. Exits non-zero if any step failed.
# Not yet run on a GPU: the time each step takes there is an estimate.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${OUT:-/tmp/gpu_check}")
LIMIT_S=${LIMIT_S:-570}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
failed=0

step() {  # step NAME LOG COMMAND...: run it, keep its output, record its exit status
    local name=$1 log=$2
    shift 2
    "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    echo "$name: exit $status after $SECONDS s" >>"$OUT/gpu.txt"
    [ "$status" -eq 0 ] || failed=1
    return "$status"
}

step install "$OUT/install.log" python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
step versions "$OUT/versions.log" python3 -c "
import shutil, sys
from pathlib import Path
import lightning, PIL, pytest, sklearn, torch, litlab
assert torch.cuda.is_available(), 'torch sees no CUDA GPU'
print(torch.cuda.get_device_name(), 'torch', torch.__version__, 'lightning', lightning.__version__, 'python', sys.version.split()[0])
script = Path(sys.executable).parent / 'litlab-train'  # where scripts/benchmark.py looks for it
assert script.is_file(), f'{script} is missing: pip put the console scripts elsewhere ({shutil.which(\"litlab-train\")})'
" || exit 1

step cuda_tests "$OUT/cuda_tests.log" python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_performance.py

first=0
for precision in bf16-mixed 32-true; do
    left=$((LIMIT_S - SECONDS))
    if [ "$precision" != bf16-mixed ] && [ "$first" -gt "$left" ]; then
        echo "$precision: skipped, $left s left and bf16-mixed took $first s" >>"$OUT/gpu.txt"
        break
    fi
    began=$SECONDS
    cp docs/performance.md "$OUT/performance_$precision.md"
    step "benchmark $precision" "$OUT/benchmark_$precision.log" timeout "$left" \
        python3 scripts/benchmark.py --device cuda --precision "$precision" --repeats 1 \
        --out "$OUT/performance_$precision.md"
    [ "$first" -gt 0 ] || first=$((SECONDS - began))
done
cat "$OUT/gpu.txt"
exit "$failed"
