"""Clustering metrics: accuracy under the best one-to-one cluster/label matching
(Hungarian, scipy) and normalised mutual information (scikit-learn)."""
from __future__ import annotations

import keras
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score


def _labels(name, a):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {a.shape}")
    if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0):
        if not np.all(np.equal(np.mod(a, 1), 0)) or a.min() < 0:
            raise ValueError(f"{name} must hold non-negative integer labels")
    return a.astype(np.int64)


def cluster_acc(y_true, y_pred) -> float:
    """Fraction of samples correct under the best matching of clusters to labels."""
    y_true, y_pred = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("cluster_acc of empty label arrays")
    size = int(max(y_true.max(), y_pred.max())) + 1
    counts = np.zeros((size, size), np.int64)
    np.add.at(counts, (y_pred, y_true), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / y_true.size)


def nmi(y_true, y_pred, average_method="arithmetic") -> float:
    """NMI; the original uses 'arithmetic' at initialisation and 'max' during training (Q12)."""
    y_true, y_pred = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    return float(normalized_mutual_info_score(y_true, y_pred, average_method=average_method))


def kmeans_scores(z, y_true, n_clusters, n_init, random_state=0):
    """K-means on features ``z``; returns (labels, {kmeans_acc, kmeans_nmi, kmeans_n_init})."""
    from sklearn.cluster import KMeans
    pred = KMeans(n_clusters, n_init=n_init, random_state=random_state).fit_predict(z)
    return pred, {"kmeans_acc": cluster_acc(y_true, pred), "kmeans_nmi": nmi(y_true, pred),
                  "kmeans_n_init": int(n_init)}


def scores_from_contingency(counts):
    """ACC and NMI ('max', as the original's running figures) of the pairs counted in
    ``counts`` [clusters, classes]: the same numbers as ``cluster_acc``/``nmi`` on the
    label arrays, which are rebuilt from the counts (both scores depend on nothing else)."""
    counts = np.rint(np.asarray(counts, np.float64)).astype(np.int64)
    pred, true = np.nonzero(counts)
    reps = counts[pred, true]
    y_pred, y_true = np.repeat(pred, reps), np.repeat(true, reps)
    if y_true.size == 0:
        return {"acc": float("nan"), "nmi": float("nan")}
    return {"acc": cluster_acc(y_true, y_pred), "nmi": nmi(y_true, y_pred, "max")}


# ---------------------------------------------------------------- Keras metrics of fit
# Keras' own Mean accumulates in float32 and weights by batch; these accumulate in float64,
# one unit per step, so an epoch's figure is the original's (1/steps) sum_s value_s. The
# values they receive are already summed over replicas (``training`` all-reduces them),
# so every replica holds the same state and the read is their mean.


class StepMean(keras.metrics.Metric):
    """Mean over the steps of an epoch of one per-step value (float64)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.total = self.add_variable((), "zeros", "float64", "mean", "total")
        self.steps = self.add_variable((), "zeros", "float64", "mean", "steps")

    def update_state(self, value):
        self.total.assign_add(keras.ops.cast(value, "float64"))
        self.steps.assign_add(keras.ops.cast(1.0, "float64"))

    def result(self):
        return keras.ops.divide_no_nan(self.total, self.steps)


class StepSum(keras.metrics.Metric):
    """Sum over the steps of an epoch of one per-step value (float64)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.total = self.add_variable((), "zeros", "float64", "mean", "total")

    def update_state(self, value):
        self.total.assign_add(keras.ops.cast(value, "float64"))

    def result(self):
        return keras.ops.add(self.total, 0.0)   # a tensor, also of an on-read variable


class FirstNonFinite(keras.metrics.Metric):
    """The 1-based step of the epoch whose value was first non-finite (0: none yet)."""

    def __init__(self, name="nonfinite_step", **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.steps = self.add_variable((), "zeros", "float64", "mean", "steps")
        self.first = self.add_variable((), "zeros", "float64", "mean", "first")

    def update_state(self, value):
        self.steps.assign_add(keras.ops.cast(1.0, "float64"))
        bad = keras.ops.logical_not(keras.ops.isfinite(value))
        new = keras.ops.logical_and(bad, keras.ops.equal(self.first, 0.0))
        self.first.assign(keras.ops.where(new, self.steps, self.first))

    def result(self):
        return keras.ops.add(self.first, 0.0)


class Contingency(keras.metrics.Metric):
    """Counts of (cluster, class) pairs over an epoch; ``scores_from_contingency`` turns
    them into ACC/NMI. Each replica counts its own rows; the read sums them."""

    def __init__(self, n_clusters, n_classes, name="contingency", **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.n_clusters, self.n_classes = int(n_clusters), int(n_classes)
        self.counts = self.add_variable((self.n_clusters, self.n_classes), "zeros", "float64",
                                        "sum", "counts")

    def update_state(self, pred, labels):
        a = keras.ops.one_hot(pred, self.n_clusters, dtype="float64")
        b = keras.ops.one_hot(labels, self.n_classes, dtype="float64")
        self.counts.assign_add(keras.ops.matmul(keras.ops.transpose(a), b))

    def result(self):
        return keras.ops.sum(self.counts)

    def scores(self):
        return scores_from_contingency(keras.ops.convert_to_numpy(self.counts))
