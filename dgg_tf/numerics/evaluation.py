"""A trained network's clustering of the full data set: cluster assignments of every
row and the full-pass figures each DGG epoch record keeps (ACC, NMI, clusters in use).
Shared by DGG training, the collapse watch, the report and the scripts."""
from __future__ import annotations

import numpy as np

from dgg_tf.core.metrics import cluster_acc, clusters_used, nmi
from dgg_tf.numerics.models import encode_mean


def predict(net, x, batch=5000):
    """Cluster assignment argmax f2(x_mean) of every row of x: a NumPy int64 array on
    every backend (``np.argmax`` of a JAX array would stay a JAX array, int32)."""
    return np.argmax(np.asarray(net.classify(encode_mean(net, x, batch))), axis=1)


def full_pass_scores(net, x, labels):
    """The full-pass figures of an epoch record: ACC, NMI ('max', as the original
    prints, and arithmetic) and clusters in use of ``predict(net, x)`` against ``labels``."""
    pred = predict(net, x)
    return {"full_acc": cluster_acc(labels, pred), "full_nmi": nmi(labels, pred, "max"),
            "full_nmi_arithmetic": nmi(labels, pred), "clusters_used": clusters_used(pred)}
