"""Quiet where it should be, in fresh processes with TensorFlow's log level left at its
default (no TF_CPP_MIN_LOG_LEVEL): ``DGG.load`` and ``predict`` of a saved model print
nothing; a fit on JAX never imports TensorFlow (Keras' ``set_random_seed`` would, so the
backend seeds without it) and so prints none of its start-up lines."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIT = """
import sys
import numpy as np
from sklearn.datasets import make_blobs
from dgg_tf import DGG
x, y = make_blobs(90, n_features=6, centers=3, cluster_std=0.5, random_state=0)
x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
np.save(sys.argv[1] + ".npy", x)
model = DGG(n_clusters=3, epochs=1, pretrain_epochs=1, classifier_epochs=1, verbose=0,
            config_overrides={"encoder_dims": (8, 8, 16), "latent_dim": 3, "num_neighbors": 5,
                              "kmeans_n_init": 1, "batch_size": 30})
model.fit(x, y)
model.save(sys.argv[1])
np.save(sys.argv[1] + "-labels.npy", model.predict(x))
loaded = sorted(m for m in ("tensorflow", "jax") if m in sys.modules)
print("loaded:", ",".join(loaded))
"""

LOAD = """
import sys
import numpy as np
from dgg_tf import DGG
model = DGG.load(sys.argv[1])
assert (model.predict(np.load(sys.argv[1] + ".npy")) == np.load(sys.argv[1] + "-labels.npy")).all()
"""


def _python(code, *args, backend="tensorflow"):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_load_and_predict_print_nothing(tmp_path):
    fitted = _python(FIT, tmp_path / "model")
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    loaded = _python(LOAD, tmp_path / "model")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout == "" and loaded.stderr == "", (loaded.stdout, loaded.stderr)


@pytest.mark.backends
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX")
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax",
                    reason="the JAX pass of the suite (KERAS_BACKEND=jax) runs it")
def test_jax_fit_imports_no_tensorflow_and_prints_nothing(tmp_path):
    fitted = _python(FIT, tmp_path / "model", backend="jax")
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert fitted.stdout == "loaded: jax\n" and fitted.stderr == "", (fitted.stdout,
                                                                      fitted.stderr)
    loaded = _python(LOAD, tmp_path / "model", backend="jax")
    assert loaded.returncode == 0 and loaded.stdout == "" and loaded.stderr == "", loaded.stderr
