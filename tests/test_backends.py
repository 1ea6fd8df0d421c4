"""Across the two backends: a model.h5 saved on one loads on the other (the same cluster
probabilities to float32 rounding, the same assignments), a JAX process leaves TensorFlow
unloaded, and the backend is chosen before Keras starts. That both backends compute the
original's step is test_real_data_parity.py's, run on each: real MNIST from the real
start, each backend inside float32's band around one float64 run of the formula (a
stronger check than the two backends' agreement on random data, which this module held
until 2026-12-05: random data hid both faults the JAX step had)."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")
HERE = os.path.dirname(os.path.abspath(__file__))


# On JAX, in one process: load the h5 argv[1] written on TensorFlow and write its
# probabilities and assignments (argv[1].load.npz); then train and save a model.h5 of its
# own (argv[2]) with its probabilities and assignments (argv[2].save.npz); record whether
# TensorFlow was loaded (argv[2].loaded).
JAX_SIDE = """
import sys
from h5_models import load_and_predict, train_and_save
load_and_predict(sys.argv[1])
train_and_save(sys.argv[2])
with open(sys.argv[2] + ".loaded", "w") as f:
    f.write(str("tensorflow" in sys.modules))
"""


def test_model_h5_loads_across_backends(tmp_path):
    """The flat model.h5 written after training on TensorFlow (in this process), loaded on
    JAX, and one written on JAX loaded on TensorFlow: the same cluster probabilities to
    float32 rounding, and the same assignments; the JAX process never loaded TensorFlow."""
    import h5_models
    from_tf, from_jax = tmp_path / "tf.h5", tmp_path / "jax.h5"
    saved_tf = h5_models.train_and_save(from_tf)
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", JAX_SIDE, str(from_tf), str(from_jax)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert open(f"{from_jax}.loaded").read() == "False"
    for saved, loaded in ((saved_tf, np.load(f"{from_tf}.load.npz")),
                          (np.load(f"{from_jax}.save.npz"), h5_models.load_and_predict(from_jax))):
        np.testing.assert_allclose(loaded["proba"], saved["proba"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(loaded["pred"], saved["pred"])


CHOOSE = """
import sys
from dgg_tf.backend.startup import select_backend
first = sys.argv[1]
if first != "none":
    import keras                                     # Keras already started on `first`
    assert keras.backend.backend() == first
code = select_backend("jax")
import keras
import dgg_tf.models                                 # the numerics, on the chosen backend
print("exit", code, "backend", keras.backend.backend(), "tf", "tensorflow" in sys.modules)
"""


def _choose(first):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    if first != "none":
        env["KERAS_BACKEND"] = first
    return subprocess.run([sys.executable, "-c", CHOOSE, first], env=env, capture_output=True,
                          text=True, timeout=120)


def test_select_backend_sets_keras_backend_before_keras_starts():
    """--backend jax (commands.select_backend) in a process with no KERAS_BACKEND: Keras
    starts on JAX and TensorFlow is never imported."""
    done = _choose("none")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exit 0 backend jax tf False" in done.stdout


def test_select_backend_refuses_a_running_other_backend():
    """Once Keras runs on TensorFlow in a process it cannot switch: exit code 2 and one
    error line naming both, not a run on the wrong backend."""
    done = _choose("tensorflow")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exit 2 backend tensorflow" in done.stdout
    assert "--backend jax: Keras already runs on tensorflow" in done.stderr


def test_every_script_takes_backend():
    """Each reproduce/ script offers --backend tensorflow|jax."""
    root = os.path.dirname(HERE)
    for name in ("mnist", "sweep", "first_step", "blobs", "digits", "pretrain_mnist",
                 "siamese_mnist"):
        text = open(os.path.join(root, "reproduce", f"{name}.py")).read()
        assert "add_backend_argument(p" in text and "select_backend(args.backend)" in text, name
