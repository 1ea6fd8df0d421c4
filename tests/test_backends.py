"""The same computation on TensorFlow and JAX: from one start, batch and noise, 3 steps
of ``net.step`` on each backend (a process each: a process has one Keras backend)
agree to float32 rounding, on the code and the paper presets; and a JAX run leaves
TensorFlow unloaded."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")
HERE = os.path.dirname(os.path.abspath(__file__))


def _steps(backend, preset, out):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE),
                                          os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, os.path.join(HERE, "backend_steps.py"), preset,
                           str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize("preset", ["code", "paper"])
def test_three_steps_agree_across_backends(preset, tmp_path):
    tf_run = _steps("tensorflow", preset, tmp_path / "tf.npz")
    jax_run = _steps("jax", preset, tmp_path / "jax.npz")
    assert bool(tf_run["tensorflow"]) and not bool(jax_run["tensorflow"])
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"], rtol=1e-5)
    worst = 0.0
    for key in tf_run.files:
        if key.startswith("p_"):
            gap = np.linalg.norm(jax_run[key] - tf_run[key]) / np.linalg.norm(tf_run[key])
            worst = max(worst, gap)
            # 1e-3, not the 1e-4: Adam's first steps move a weight by about
            # lr * sign(gradient), so where a gradient entry is near 0 its float32 rounding
            # decides a +-lr update. TensorFlow's own eager, graph and XLA runs of this
            # float32 step differ by 5.9e-4 to 8.4e-4 after 3 steps, and each by as much
            # from a float64 run (benchmarks/step_rounding.py), so 1e-4 holds only where
            # the two backends' kernels happen to round alike. Measured on a Sapphire
            # Rapids Xeon: 6.8e-5 (code) and 3.1e-5 (paper); the losses agree to 1e-7.
            assert gap < 1e-3, (key, gap)
    print(f"{preset}: losses {tf_run['losses']} vs {jax_run['losses']}; worst parameter gap "
          f"{worst:.2e}")
