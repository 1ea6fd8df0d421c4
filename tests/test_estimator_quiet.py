"""The estimator at verbose=0 prints nothing, on stdout or stderr, in a fresh process
with TensorFlow's log level left at its default (no TF_CPP_MIN_LOG_LEVEL): not our
stage lines, not our collapse warnings, not TensorFlow's C++ start-up lines. The
default verbose=1 says what each stage does."""
import os
import subprocess
import sys

FIT = """
import numpy as np, sys
from sklearn.datasets import make_blobs
from dgg_tf import DGG
x, y = make_blobs(120, n_features=8, centers=3, cluster_std=0.5, random_state=0)
x = (x - x.min()) / (x.max() - x.min())
model = DGG(n_clusters=3, epochs=1, pretrain_epochs=1, classifier_epochs=1, siamese_epochs=1,
            verbose=int(sys.argv[1]),
            config_overrides={"encoder_dims": (8, 8, 16), "latent_dim": 3, "num_neighbors": 5,
                              "kmeans_n_init": 1, "batch_size": 40})
model.fit(x, y)
assert len(model.labels_) == 120
"""


def _fit(verbose):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", FIT, str(verbose)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_verbose_0_prints_nothing_at_all():
    out = _fit(0)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == "", (out.stdout, out.stderr)


def test_verbose_1_is_the_default_and_names_each_stage():
    import inspect

    from dgg_tf import DGG
    assert inspect.signature(DGG).parameters["verbose"].default == 1
    out = _fit(1)
    assert out.returncode == 0, out.stderr
    for stage in ("GMM init (K-means on the encoder means): done in", "DGG training: done in"):
        assert stage in out.stdout
    assert "cuInit" not in out.stderr and "oneDNN custom operations" not in out.stderr
