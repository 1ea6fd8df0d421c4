#!/usr/bin/env bash
# One prepared check for a GPU machine with JAX and CUDA and no TensorFlow (the H200 the
# device tool lends), in one call of at most 9 minutes. First, on a machine with
# network: bash benchmarks/device_prepare.sh; then run with carry [".whl", ".data"]:
#   OUT=/tmp/out bash benchmarks/device_check.sh
# It prints, and leaves under $OUT (at most 6 files, no folder):
#   1. the device (device.txt);
#   2. the median all-in step (index batches from the host, the step, the logs: a fit
#      epoch of 200 steps, per step) and the step alone, in float32 with JAX's matmul
#      precision "highest" (the faithful setting: the default on an H200 is TF32, 10
#      mantissa bits) and in mixed_bfloat16 (step_time.txt);
#   3. cells of the `full` sweep protocol (code and paper x 5 seeds, full MNIST, 300
#      epochs, mixed_bfloat16) for the time that remains, $JOBS processes at once on the
#      one GPU (each with 1/$JOBS of its memory), then the epochs per minute of all of
#      them together against one process's rate from step 2, and each cell's ACC per
#      epoch (cells.csv, summary.txt; sweep.log, the sweep's own lines).
# On a CPU (to test it): DGG_DEVICE_TEST=1 shrinks step 2 and runs the `tiny` protocol.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/dgg_device_check}
BUDGET=${BUDGET:-530}                        # seconds for the whole script
JOBS=${JOBS:-5}
START=$(date +%s)
mkdir -p "$OUT"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# Keras and its missing dependencies from the carried wheels, into a private folder
DEPS=$(mktemp -d)
python3 -c "import keras" 2>/dev/null || {
    ls .whl/*.whl > /dev/null 2>&1 || { echo "device_check: no .whl/ (run benchmarks/device_prepare.sh first)"; exit 3; }
    python3 -m pip install -q --disable-pip-version-check --no-index --no-deps \
        --target "$DEPS" .whl/*.whl || exit 3; }
export PYTHONPATH="$DEPS:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export KERAS_BACKEND=jax JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false
DATA=${DGG_MNIST:-.data/mnist}
[ -d "$DATA" ] || { echo "device_check: no MNIST in $DATA (run benchmarks/device_prepare.sh)"; exit 3; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  python3 -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__, jax.devices())"
  python3 -c "import sys, dgg_tf.training; print('tensorflow imported:', 'tensorflow' in sys.modules)"
} 2>&1 | tee "$OUT/device.txt"
if [ -n "${DGG_DEVICE_TEST:-}" ]; then STEPS=(--steps 3 --epoch-samples 500); PROTOCOL=tiny; EPOCH_STEPS=10
else STEPS=(--steps 50 --epoch-samples 20000); PROTOCOL=full; EPOCH_STEPS=700; fi
timeout 170 python3 benchmarks/step_time.py --backend jax --alone "${STEPS[@]}" \
    --precision float32 mixed_bfloat16 2>&1 | grep -v Warning | tee "$OUT/step_time.txt"
SWEEP=$(mktemp -d)/sweep                     # many files: only summaries go to $OUT
T0=$(date +%s)
RUN=$(( $(left) - 25 ))
echo "full protocol cells, $JOBS at once, for ${RUN} s"
XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $JOBS, 3))") \
timeout "$RUN" python3 reproduce/sweep.py --protocol "$PROTOCOL" --configs code,paper \
    --precision mixed_bfloat16 --data "$DATA" --out "$SWEEP" --jobs "$JOBS" \
    > "$OUT/sweep.log" 2>&1
python3 benchmarks/device_summary.py "$SWEEP" "$(( $(date +%s) - T0 ))" "$OUT/step_time.txt" \
    "$OUT/cells.csv" "$EPOCH_STEPS" | tee "$OUT/summary.txt"
rm -rf "$DEPS" "$(dirname "$SWEEP")"
