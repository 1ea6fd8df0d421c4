"""Small numeric summaries the measurements share (plain NumPy, float64)."""
from __future__ import annotations

import numpy as np


def stats(a):
    """min / median / max / mean of the finite values of ``a`` (None when none)."""
    a = np.asarray(a, np.float64).ravel()
    f = a[np.isfinite(a)]
    if f.size == 0:
        return {"min": None, "median": None, "max": None, "mean": None}
    return {"min": float(f.min()), "median": float(np.median(f)), "max": float(f.max()),
            "mean": float(f.mean())}


def flat(grads):
    """One float64 vector of a list of gradient arrays."""
    return np.concatenate([np.asarray(g, np.float64).ravel() for g in grads])


def cosine(a, b):
    """Cosine of two vectors; None when either is zero or not finite."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if not (np.isfinite(na) and np.isfinite(nb)) or na == 0.0 or nb == 0.0:
        return None
    return float(np.dot(a, b) / (na * nb))


def agg(values):
    """mean / min / max over batches, skipping None."""
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return {"mean": None, "min": None, "max": None}
    return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}


def mean_dicts(dicts):
    """Key-wise mean of dicts with the same keys (per-batch loss terms)."""
    keys = list(dicts[0])
    return {k: float(np.mean([d[k] for d in dicts])) for k in keys}


def weight_stats(w):
    """Flat summary of weights [rows, Nn] (finite values only; NaN/Inf counted)."""
    w = np.asarray(w)
    n_nan, n_inf = int(np.isnan(w).sum()), int(np.isinf(w).sum())
    rs, sw, nw = stats(np.sum(w, axis=1)), stats(w[:, 0]), stats(w[:, 1:])
    return {"row_sum_min": rs["min"], "row_sum_median": rs["median"], "row_sum_max": rs["max"],
            "row_sum_mean": rs["mean"], "self_weight_mean": sw["mean"],
            "neighbour_weight_min": nw["min"], "neighbour_weight_median": nw["median"],
            "neighbour_weight_max": nw["max"], "n_nan": n_nan, "n_inf": n_inf,
            "finite": bool(n_nan == 0 and n_inf == 0)}
