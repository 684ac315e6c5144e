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
# Writes to $OUT: gpu.txt (the card, versions, each step's exit status), host_reads.json (the
# lines that read tensors back to the host in a default run's steps), cuda_tests.log (the
# @cuda tests), benchmark_<precision>.log per precision, and performance.md, a copy of
# docs/performance.md with a GPU block filled in per precision. The order is what matters most
# first: the host reads (a minute), the benchmark at bf16-mixed (with litlab's NaN guard and
# checkpoints each priced as a variant), the @cuda tests, then the benchmark at 16-mixed if the
# first one's time still fits.
# The benchmarks run with --keep-going: a failed parity check or net is reported in the table and
# the log, and the other nets are still measured. Everything stops by LIMIT_S seconds after the
# start (default 570). Exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${OUT:-/tmp/gpu_check}")
LIMIT_S=${LIMIT_S:-570}
TESTS_S=150  # kept for the @cuda tests (one compiles a CNN)
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

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$OUT/gpu.txt" 2>&1
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

cp docs/performance.md "$OUT/performance.md"
benchmark() {  # benchmark PRECISION SECONDS [ARGS...]
    local precision=$1 limit=$2
    shift 2
    step "benchmark $precision" "$OUT/benchmark_$precision.log" timeout "$limit" \
        python3 scripts/benchmark.py --device cuda --precision "$precision" --repeats 1 --keep-going \
        --out "$OUT/performance.md" "$@"
}

# Which lines read tensors back to the host in a default GPU run's training steps (each a sync).
step host_reads "$OUT/host_reads.log" timeout 120 \
    python3 -m litlab.train trainer=gpu trainer.precision=bf16-mixed model=cnn data.batch_size=8 test=false \
    print_config=false debug=host_reads callbacks.host_reads.path="$OUT/host_reads.json" \
    paths.log_dir="$(mktemp -d)"

began=$SECONDS
benchmark bf16-mixed $((LIMIT_S - SECONDS - TESTS_S)) \
    --variants "callbacks.nan_guard=null" "callbacks.model_checkpoint=null"
first=$((SECONDS - began))

left=$((LIMIT_S - SECONDS))
step cuda_tests "$OUT/cuda_tests.log" timeout $((left < TESTS_S ? left : TESTS_S)) \
    python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_performance.py tests/test_numerics.py

left=$((LIMIT_S - SECONDS))
if [ "$first" -lt "$left" ]; then
    benchmark 16-mixed "$left"
else
    echo "16-mixed: skipped, $left s left and bf16-mixed took $first s" >>"$OUT/gpu.txt"
fi
cat "$OUT/gpu.txt"
exit "$failed"
