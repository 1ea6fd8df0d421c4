#!/usr/bin/env bash
# Run HERE (a machine that reaches PyPI), before benchmarks/device_check.sh is sent to a
# GPU machine that has Python 3.12, JAX with CUDA, scikit-learn, h5py, scipy, matplotlib
# and tensorboard, but no TensorFlow, no Keras and no network. Writes two ignored
# folders that the device tool carries (carry: [".whl", ".data"], about 16 MB):
#   .whl/   keras (this machine's version) and the dependencies of it that machine
#           lacks, as cp312 manylinux / pure wheels;
#   .data/mnist/  the four MNIST idx files (../shared does not travel).
#   bash benchmarks/device_prepare.sh            (DGG_MNIST: where MNIST is here)
set -euo pipefail
cd "$(dirname "$0")/.."
KERAS=$(python3 -c "import importlib.metadata as m; print(m.version('keras'))")
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -d .whl \
    "keras==$KERAS" namex optree rich markdown-it-py mdurl pygments filelock
MNIST=${DGG_MNIST:-../shared/data/mnist}
mkdir -p .data/mnist
cp "$MNIST"/*-ubyte.gz .data/mnist/
ls .whl
du -sh .whl .data
