"""reproduce/mnist.py on a tiny MNIST-shaped data set (300 digits upscaled to 28 x 28,
written as idx files) with a tiny 784-16-16-32-10 network: the data, the command line,
runs in this process or in a fresh one, and the comparison of two runs. The runs that
several test modules compare against (``tiny``, ``reference``, ``fresh``) are
session fixtures in conftest.py: one per pytest process, not one per module."""
import gzip
import importlib.util
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dgg_tf.core.config import DGGConfig
from dgg_tf.core.history import read_history_csv
from dgg_tf.core.weight_files import load_weights_h5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("reproduce_mnist", os.path.join(ROOT, "reproduce", "mnist.py"))
mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mnist)

N = 300
# Runs reproduce/mnist.py (argv[1]) with the arguments after argv[3] and sends itself
# the signal argv[2] (SIGKILL: a real kill -9; SIGTERM) after the first batch of 0-based
# epoch argv[3]: a stop in the middle of an epoch.
STOP_MID_EPOCH = """
import importlib.util, os, signal, sys
import keras
spec = importlib.util.spec_from_file_location("m", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
sig, at = getattr(signal, sys.argv[2]), int(sys.argv[3])
class Stop(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == at and batch == 0:
            os.kill(os.getpid(), sig)
sys.exit(m.main(sys.argv[4:], callbacks=[Stop()]))
"""
TINY = DGGConfig(encoder_dims=(16, 16, 32))


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_kmeans():
    """scikit-learn's OpenMP K-means on tiny data is ~100x slower with 2 busy cores than
    single-threaded; keep the tests fast (no effect on results)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        yield


def _idx(path, arr):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def write_tiny_mnist(root):
    """idx directory (240 train + 60 test images) and a tiny autoencoder weight file."""
    import keras

    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.numerics.weights import get_params, save_weights_h5
    d = load_digits()
    imgs = np.pad(np.kron(d.images[:N], np.ones((3, 3))), ((0, 0), (2, 2), (2, 2))) * (255 / 16)
    _idx(root / "train-images-idx3-ubyte.gz", imgs[:240])
    _idx(root / "train-labels-idx1-ubyte.gz", d.target[:240])
    _idx(root / "t10k-images-idx3-ubyte.gz", imgs[240:])
    _idx(root / "t10k-labels-idx1-ubyte.gz", d.target[240:N])
    keras.utils.set_random_seed(1)
    params = {k: v for k, v in get_params(DGGNetwork(TINY)).items()
              if k.startswith(("encoder", "decoder"))}          # an autoencoder file, like mnist_ae.h5
    save_weights_h5(root / "ae.h5", params, {"source": "test"})
    return root


def base_args(tiny, out, *extra):
    return ["--variant", "code", "--data", str(tiny), "--weights", str(tiny / "ae.h5"),
            "--subset", str(N), "--subset-neighbors", "raw",
            "--set", "encoder_dims=16,16,32", "--set", "classifier_epochs=2",
            "--set", "kmeans_n_init=2", "--audit-batches", "2", "--verbose", "0",
            "--out", str(out), *extra]


def deterministic(history):
    """History rows without the wall-clock / memory columns."""
    return [{k: v for k, v in r.items() if "seconds" not in k and "rss" not in k} for r in history]


def assert_same_run(a, b):
    assert deterministic(read_history_csv(a / "history.csv")) == deterministic(read_history_csv(b / "history.csv"))
    pa, _ = load_weights_h5(a / "model.h5")
    pb, _ = load_weights_h5(b / "model.h5")
    assert sorted(pa) == sorted(pb)
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    np.testing.assert_array_equal(np.load(a / "predictions.npy"), np.load(b / "predictions.npy"))


def run_fresh(*args, wrapper=None):
    """reproduce/mnist.py in a fresh Python process (``wrapper``: a ``-c`` script that
    takes mnist.py's path first, like STOP_MID_EPOCH)."""
    script = os.path.join(ROOT, "reproduce", "mnist.py")
    cmd = [sys.executable, "-c", wrapper, script] if wrapper else [sys.executable, script]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600)
