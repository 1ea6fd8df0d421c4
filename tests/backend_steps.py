"""Runs 3 DGG steps on the backend of KERAS_BACKEND from a fixed start, batch and noise
(the real layer sizes, B=100, Nn=21), and writes the logs and parameters to an .npz:
``python tests/backend_steps.py OUT_PREFIX PRESET [PRESET ...]`` writes
OUT_PREFIX-PRESET.npz for each preset (one process, one backend start). ``test_backends`` compares the two
backends' files; it also records whether TensorFlow was loaded."""
import sys

import numpy as np

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.dgg import compile_dgg


def torch_like_start(shapes, rng):
    """PyTorch's default Linear init (uniform in +-1/sqrt(fan_in)) from NumPy's generator,
    so both backends start from the same weights; GMM means N(0, 1), stds 1."""
    params = {}
    for key, value in shapes.items():
        layer = key.split("/")[0]
        if layer == "gmm":
            params[key] = (np.ones_like(value) if key.endswith("std")
                           else rng.standard_normal(value.shape).astype(np.float32))
        else:
            bound = 1.0 / np.sqrt(shapes[f"{layer}/W"].shape[0])
            params[key] = rng.uniform(-bound, bound, value.shape).astype(np.float32)
    return params


def main(preset, out):
    config = DGGConfig.preset(preset)
    rng = np.random.default_rng(7)
    net = compile_dgg(DGGNetwork(config))
    set_params(net, torch_like_start(get_params(net), rng))
    losses = []
    for _ in range(3):
        x = rng.random((100, 21, config.input_dim)).astype(np.float32)
        w = rng.random((100, 21)).astype(np.float32)
        w /= w.sum(axis=1, keepdims=True)
        eps = rng.standard_normal((100, 21, config.latent_dim)).astype(np.float32)
        losses.append(float(net.step((x, w, eps))["loss"]))
    params = get_params(net)
    np.savez(out, losses=np.array(losses), tensorflow=("tensorflow" in sys.modules),
             **{f"p_{k}": v for k, v in params.items()})


if __name__ == "__main__":
    for name in sys.argv[2:]:
        main(name, f"{sys.argv[1]}-{name}.npz")
