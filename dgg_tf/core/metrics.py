"""Clustering metrics: accuracy under the best one-to-one cluster/label matching
(Hungarian, scipy) and normalised mutual information (scikit-learn)."""
from __future__ import annotations

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


def clusters_used(pred) -> int:
    """How many distinct clusters the predictions ``pred`` [N] use."""
    return int(np.unique(np.asarray(pred)).size)
