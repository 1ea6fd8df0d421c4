#!/usr/bin/env bash
# One prepared check for a GPU machine, finishing within 8 minutes:
#   1. the device and the median training step in float32 and mixed_bfloat16;
#   2. the code variant on full MNIST from the shipped files, for as many epochs as fit
#      in the time left (checkpointing under $OUT/run), and the epochs per minute.
# Needs TensorFlow with CUDA and Keras 3 (pip install -e ".[gpu]") and MNIST in
# $DGG_MNIST (default ../shared/data/mnist, else .data/mnist inside the checkout).
#   OUT=/tmp/out bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/dgg_device_check}
BUDGET=${BUDGET:-470}                       # seconds for the whole script
START=$(date +%s)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
python3 -c "import tensorflow, keras" 2>/dev/null || {
    echo "device_check: TensorFlow/Keras are not installed here (pip install -e '.[gpu]')"; exit 3; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_logical_devices('GPU'))"
timeout 150 python3 benchmarks/step_time.py --steps 50 | tee "$OUT/step_time.txt"
DATA=${DGG_MNIST:-../shared/data/mnist}
[ -d "$DATA" ] || DATA=.data/mnist
LEFT=$(( BUDGET - ($(date +%s) - START) - 20 ))
echo "training the code variant for up to ${LEFT} s (data $DATA)"
timeout "$LEFT" python3 reproduce/mnist.py --variant code --data "$DATA" --out "$OUT/run" \
    --steps-per-execution 50 --verbose 2 --audit-batches 2 2>&1 | tail -n 30
python3 - "$OUT/run" <<'PY'
import csv, os, sys
path = os.path.join(sys.argv[1], "history.csv")
rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
if not rows:
    sys.exit("no finished epoch")
secs = [float(r["seconds"]) for r in rows]
late = secs[1:] or secs
print(f"epochs finished: {len(rows)}; seconds per epoch (after the first): "
      f"{sum(late) / len(late):.1f}; epochs per minute: {60 * len(late) / sum(late):.2f}; "
      f"last full_acc {rows[-1].get('full_acc')}")
PY
