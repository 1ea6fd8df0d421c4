"""Run by test_fit.py in its own process: one DGG epoch, and classifier pretraining, on
one device and distributed over 2 virtual CPUs (MirroredStrategy on TensorFlow,
keras.distribution.DataParallel on JAX: ``devices.make_strategy("mirrored")``), from the
same weights, batches and noise; exits non-zero if a loss differs by more than 1e-5
relative or a parameter by more than 1e-5 relative to its tensor's scale, or if an epoch
whose decoder outputs are saturated at exactly 1.0 and 0.0 is not finite (the log
epsilon folded away by the distributed step's compiler)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dgg_tf.backend.devices import make_strategy, split_cpu  # noqa: E402

split_cpu(2)

import numpy as np  # noqa: E402
import reference as ref  # noqa: E402

from dgg_tf import backend  # noqa: E402
from dgg_tf.core.config import DGGConfig  # noqa: E402
from dgg_tf.numerics.models import DGGNetwork  # noqa: E402
from dgg_tf.numerics.weights import get_params, set_params  # noqa: E402
from dgg_tf.stages.dgg import compile_dgg, train_dgg  # noqa: E402
from dgg_tf.stages.initialise import pretrain_classifier  # noqa: E402

CFG = DGGConfig(input_dim=12, encoder_dims=(9, 8, 16), latent_dim=3, n_clusters=4,
                batch_size=20, num_neighbors=3, epochs=1, similarity="gauss")


def run(strategy, params, x, table, y):
    with backend.strategy_scope(strategy):
        net = DGGNetwork(CFG)
        set_params(net, params)
        compile_dgg(net)
        history = train_dgg(net, x, table, y, verbose=0)
        run.replicas = backend.replicas(net)
    return history, get_params(net)


def classifier(strategy, params, h, targets):
    """Classifier pretraining (f2 alone, through fit) under ``strategy``."""
    with backend.strategy_scope(strategy):
        net = DGGNetwork(CFG.replace(classifier_epochs=2, classifier_batch_size=20))
        set_params(net, params)
        history = pretrain_classifier(net, h, targets, net.config, verbose=0)
    return history, get_params(net)["classifier/W"]


def main():
    rng = np.random.default_rng(0)
    params = ref.random_params(CFG, rng)
    x = rng.random((100, 12)).astype(np.float32)
    table = np.stack([np.arange(100)] + [rng.permutation(100) for _ in range(3)], 1)
    y = rng.integers(0, 3, 100)
    mirrored = make_strategy("mirrored")
    single = make_strategy("default")
    h1, p1 = run(single, params, x, table, y)
    h2, p2 = run(mirrored, params, x, table, y)
    print("backend", backend.NAME, "replicas", run.replicas)
    for key in ("loss", "reconstruction", "gmm", "prior", "recon_bce", "gamma_sq_sum"):
        rel = abs(h1[0][key] - h2[0][key]) / abs(h1[0][key])
        print(key, h1[0][key], h2[0][key], rel)
        assert rel < 1e-5, key
    assert h1[0]["running_acc"] == h2[0]["running_acc"]
    for k in p1:
        rel = float(np.max(np.abs(p1[k] - p2[k])) / (np.max(np.abs(p1[k])) + 1e-12))
        assert rel < 1e-5, (k, rel)
    # decoder outputs exactly 1.0 and 0.0: the distributed step keeps log(. + 1e-10) too
    saturated = {**params, "decoder4/W": np.zeros_like(params["decoder4/W"]),
                 "decoder4/b": np.r_[[60.0] * 6, [-200.0] * 6].astype(np.float32)}
    (s1, _), (s2, _) = (run(s, saturated, x, table, y) for s in (single, mirrored))
    print("saturated reconstruction", s1[0]["reconstruction"], s2[0]["reconstruction"])
    assert np.isfinite(s1[0]["loss"]) and np.isfinite(s2[0]["loss"])
    assert abs(s1[0]["reconstruction"] - s2[0]["reconstruction"]) < \
        1e-5 * abs(s1[0]["reconstruction"])
    h = rng.normal(size=(100, 3)).astype(np.float32)
    targets = rng.integers(0, 4, 100)
    (c1, w1), (c2, w2) = (classifier(s, params, h, targets)
                          for s in (single, mirrored))
    print("classifier loss", c1[-1]["loss"], c2[-1]["loss"])
    assert abs(c1[-1]["loss"] - c2[-1]["loss"]) < 1e-5 * abs(c1[-1]["loss"])
    assert np.max(np.abs(w1 - w2)) < 1e-5 * np.max(np.abs(w1))
    print("ok")


if __name__ == "__main__":
    main()
