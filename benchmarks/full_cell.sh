#!/usr/bin/env bash
# One cell of the full sweep protocol (full MNIST, 300 epochs, float32) on a GPU machine:
#   OUT=/tmp/out CONFIG=code bash benchmarks/full_cell.sh      (seed 0 of that configuration)
# CONFIG: code, paper, a flip (dgg_tf.sweep.protocols.FLIPS) or a diagnostic configuration
# (dgg_tf.sweep.protocols.DIAGNOSTIC_GRID, e.g. code+warmup). Rerunning the same command resumes the cell (and skips it once finished); the cell's
# result joins $OUT/sweep/sweep.json like any other. Needs TensorFlow with CUDA
# (pip install -e ".[gpu]") or JAX with CUDA (".[jax-gpu]", then KERAS_BACKEND=jax and
# JAX_DEFAULT_MATMUL_PRECISION=highest for faithful float32), and MNIST in $DGG_DATA
# (default ../shared/data/mnist; .data/mnist after benchmarks/device_prepare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/dgg_full_cell}
export PYTHONUNBUFFERED=1
DATA=${DGG_DATA:-${DGG_MNIST:-../shared/data/mnist}}
python3 reproduce/sweep.py --protocol full --configs "${CONFIG:-code}" --seeds 1 \
    --flip-seeds 1 --data "$DATA" --out "$OUT/sweep" --jobs 1
