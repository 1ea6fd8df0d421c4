"""Quiet where it should be, in fresh processes with TensorFlow's log level left at its
default (no TF_CPP_MIN_LOG_LEVEL). The estimator at verbose=0 prints nothing, on stdout
or stderr: not our stage lines, not our collapse warnings, not TensorFlow's C++ start-up
lines; ``DGG.load`` and ``predict`` of the saved model print nothing either; a fit on
JAX never imports TensorFlow (Keras' ``set_random_seed`` would, so the backend seeds
without it) and so prints none of its start-up lines. The default verbose=1 says what
each stage does; written to a pipe (no terminal), it is a line per epoch with no
progress-bar frames or control codes, and a fit without labels or workdir reports its
loss and clusters, and no files."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# argv: verbose, "labels" or "none", and where to save the model ("-": nowhere). The
# modules loaded go to a file, not to stdout: at verbose 0 the output must be empty.
FIT = """
import sys
import numpy as np
from sklearn.datasets import make_blobs
from dgg_tf import DGG
verbose, labels, out = int(sys.argv[1]), sys.argv[2] == "labels", sys.argv[3]
x, y = make_blobs(120, n_features=8, centers=3, cluster_std=0.5, random_state=0)
x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
model = DGG(n_clusters=3, epochs=2, pretrain_epochs=1, classifier_epochs=1, siamese_epochs=1,
            verbose=verbose,
            config_overrides={"encoder_dims": (8, 8, 16), "latent_dim": 3, "num_neighbors": 5,
                              "kmeans_n_init": 1, "batch_size": 40})
model.fit(x, y if labels else None)
assert len(model.labels_) == 120
if out != "-":
    model.save(out)
    np.save(out + ".npy", x)
    np.save(out + "-labels.npy", model.predict(x))
    with open(out + ".loaded", "w") as f:
        f.write(",".join(sorted(m for m in ("tensorflow", "jax") if m in sys.modules)))
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
                          text=True, env=env, timeout=600)


def _fit_at_verbose_0_then_load(model, backend):
    """One fresh process fits at verbose 0 and saves; a second loads and predicts. Both
    print nothing. Returns the modules the fit loaded."""
    fitted = _python(FIT, 0, "labels", model, backend=backend)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert fitted.stdout == "" and fitted.stderr == "", (fitted.stdout, fitted.stderr)
    loaded = _python(LOAD, model, backend=backend)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout == "" and loaded.stderr == "", (loaded.stdout, loaded.stderr)
    return open(f"{model}.loaded").read()


def test_verbose_0_fit_load_and_predict_print_nothing(tmp_path):
    _fit_at_verbose_0_then_load(tmp_path / "model", "tensorflow")


@pytest.mark.backends
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX")
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax",
                    reason="the JAX pass of the suite (KERAS_BACKEND=jax) runs it")
def test_jax_fit_imports_no_tensorflow_and_prints_nothing(tmp_path):
    assert _fit_at_verbose_0_then_load(tmp_path / "model", "jax") == "jax"


def test_verbose_1_is_the_default_names_each_stage_and_reads_well_in_a_file():
    import inspect

    from dgg_tf import DGG
    assert inspect.signature(DGG).parameters["verbose"].default == 1
    out = _python(FIT, 1, "none", "-")
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
