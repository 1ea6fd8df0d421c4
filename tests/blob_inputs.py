"""Shared test data for sweeps: blobs squashed into (0, 1), their raw-kNN neighbour
tables and a small untrained autoencoder saved as a weights file."""
import numpy as np


def blob_inputs(folder, n, cfg, sharpness=1.0):
    """(x, y, tables, weights path) for ``n`` blobs in (0, 1)^64, 10 centres; x is
    sigmoid(blobs / sharpness): a larger ``sharpness`` keeps x further from 0 and 1."""
    import keras
    from sklearn.datasets import make_blobs

    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.numerics.weights import get_params, save_weights_h5
    from dgg_tf.stages.neighbors import rebuild_raw
    x, y = make_blobs(n, 64, centers=10, cluster_std=0.5, random_state=0)
    x = (1 / (1 + np.exp(-x / sharpness))).astype(np.float32)
    tables, _ = rebuild_raw(x, cfg)
    keras.utils.set_random_seed(1)
    params = {k: v for k, v in get_params(DGGNetwork(cfg)).items()
              if k.startswith(("encoder", "decoder"))}
    weights = folder / "ae.h5"
    save_weights_h5(weights, params, {"source": "test"})
    return x, y, tables, weights
