"""The estimator at verbose=0 prints nothing, on stdout or stderr, in a fresh process
with TensorFlow's log level left at its default (no TF_CPP_MIN_LOG_LEVEL): not our
stage lines, not our collapse warnings, not TensorFlow's C++ start-up lines. The
default verbose=1 says what each stage does; written to a pipe (no terminal), it is a
line per epoch with no progress-bar frames or control codes, and a fit without labels
or workdir reports its loss and clusters, and no files."""
import os
import subprocess
import sys

FIT = """
import numpy as np, sys
from sklearn.datasets import make_blobs
from dgg_tf import DGG
x, y = make_blobs(120, n_features=8, centers=3, cluster_std=0.5, random_state=0)
x = (x - x.min()) / (x.max() - x.min())
model = DGG(n_clusters=3, epochs=2, pretrain_epochs=1, classifier_epochs=1, siamese_epochs=1,
            verbose=int(sys.argv[1]),
            config_overrides={"encoder_dims": (8, 8, 16), "latent_dim": 3, "num_neighbors": 5,
                              "kmeans_n_init": 1, "batch_size": 40})
model.fit(x, y if sys.argv[2] == "labels" else None)
assert len(model.labels_) == 120
"""


def _fit(verbose, labels="labels"):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", FIT, str(verbose), labels], capture_output=True,
                          text=True, env=env, timeout=600)


def test_verbose_0_prints_nothing_at_all():
    out = _fit(0)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == "", (out.stdout, out.stderr)


def test_verbose_1_is_the_default_names_each_stage_and_reads_well_in_a_file():
    import inspect

    from dgg_tf import DGG
    assert inspect.signature(DGG).parameters["verbose"].default == 1
    out = _fit(1, labels="none")
    assert out.returncode == 0, out.stderr
    for stage in ("GMM init (K-means on the encoder means): done in", "DGG training: done in"):
        assert stage in out.stdout
    for frame in ("\x1b", "\r", "\b", "━"):         # no bar, no control codes
        assert frame not in out.stdout + out.stderr, frame
    lines = out.stdout.splitlines()
    assert sum(ln.startswith("epoch=") for ln in lines) == 2          # a line per epoch
    assert "  final (epoch 2): loss " in out.stdout and "(no labels: no ACC or NMI)" in out.stdout
    assert "  clusters in use at the end: " in out.stdout
    for absent in ("n/a", "None", "report:", "curves"):     # nothing it lacks, no files
        assert absent not in out.stdout, absent
    assert "cuInit" not in out.stderr and "oneDNN custom operations" not in out.stderr
