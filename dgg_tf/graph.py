"""The graph: similarity weights w_ij between a sample and its neighbours (section 6),
and (below) exact nearest neighbours and the neighbour table (section 2)."""
from __future__ import annotations

import numpy as np

SIMILARITIES = ("no_inform", "gauss", "inv_gauss", "student_t", "kl")
SIGMA_ROW = 11  # Q7: the original divides by row 11 of the batch's sorted distances


def pairwise_to_self(x_nbrs):
    """Squared distance of every neighbour column j to column 0: [B, Nn]."""
    diff = x_nbrs - x_nbrs[:, :1, :]
    return np.einsum("bjd,bjd->bj", diff, diff, dtype=np.float32)


def similarity_weights(x_nbrs, sigma=10.0, kind="no_inform", sigma_mode="code"):
    """Weights w [B, Nn] of each sample's columns (column 0 = the sample itself).

    ``x_nbrs`` [B, Nn, D] holds raw inputs. Kinds, as ``compute_weight`` of the original:
    ``no_inform`` self 1, neighbours 1/(Nn-1), normalised; ``kl`` self 1/Nn, neighbours
    1/(Nn-1), normalised; ``gauss`` exp(-d/sigma), self = sum of neighbours, NOT
    normalised; ``inv_gauss`` exp(+d/sigma), self = sum, normalised; ``student_t``
    1/(1 + d/sigma), self = sum, normalised (Q6: the original crashes here; this is
    its evident intent).

    ``sigma_mode="code"`` reproduces Q7: the sigma argument is ignored and column j
    is divided by the j-th smallest distance of batch ROW 11, so a batch of fewer
    than 12 samples is an error (the original raises IndexError, whatever the kind,
    because it computes this before branching). ``"honoured"`` divides by ``sigma``.
    Computed in float32 like the original; 0/0 or x/0 give NaN/Inf exactly as there.
    """
    x_nbrs = np.asarray(x_nbrs, np.float32)
    if x_nbrs.ndim != 3 or x_nbrs.shape[1] < 2:
        raise ValueError(f"similarity_weights expects x_nbrs of shape [B, Nn >= 2, D], got "
                         f"{x_nbrs.shape}")
    if kind not in SIMILARITIES:
        raise ValueError(f"similarity kind {kind!r} unknown; choose one of {', '.join(SIMILARITIES)}")
    if sigma_mode not in ("code", "honoured"):
        raise ValueError(f"sigma_mode must be 'code' or 'honoured', got {sigma_mode!r}")
    batch, nn = x_nbrs.shape[:2]
    if sigma_mode == "code" and batch <= SIGMA_ROW:
        raise ValueError(
            f"sigma_mode='code' needs a batch of at least {SIGMA_ROW + 1} samples (got {batch}): "
            f"the original takes sigma from row {SIGMA_ROW} of the batch's sorted distances and "
            "raises IndexError on smaller batches (Q7); use sigma_mode='honoured' or a larger batch")
    if kind in ("no_inform", "kl"):
        w = np.full((batch, nn), 1.0 / (nn - 1), np.float32)
        w[:, 0] = 1.0 if kind == "no_inform" else 1.0 / nn
        return w / w.sum(axis=1, keepdims=True)
    dist = pairwise_to_self(x_nbrs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if sigma_mode == "code":
            dist = dist / np.sort(dist, axis=1)[SIGMA_ROW][None, :]
        else:
            if not sigma > 0:
                raise ValueError(f"sigma must be positive, got {sigma}")
            dist = dist / np.float32(sigma)
        if kind == "gauss":
            s = np.exp(-dist)
        elif kind == "inv_gauss":
            s = np.exp(dist)
        else:  # student_t
            s = np.float32(1.0) / (np.float32(1.0) + dist)
        s[:, 0] = s[:, 1:].sum(axis=1)
        if kind != "gauss":
            s = s / s.sum(axis=1, keepdims=True)
    return s.astype(np.float32)


# ----------------------------------------------------------------------------
# Exact nearest neighbours (section 2)
# ----------------------------------------------------------------------------
_U32 = 2.0 ** -24  # unit roundoff of float32
_U64 = 2.0 ** -53  # unit roundoff of float64


def _exact_sq_dist(x, rows, cols):
    """Squared distances in float64 from ``x[rows[i]]`` to ``x[cols[i, j]]``: [len(rows), C].

    The reference definition of "exact": the sum of squared float64 differences, the
    same computation for every pair, so duplicate rows tie bit for bit."""
    a = np.asarray(x[rows], np.float64)[:, None, :]
    diff = np.subtract(x[cols], a, dtype=np.float64)
    return np.einsum("ijk,ijk->ij", diff, diff)


def _full_rows(x, rows, k, chunk=4096):
    """Exact answer for some rows by a full float64 pass over all N rows (the fallback)."""
    n = len(x)
    out = np.empty((len(rows), k + 1), np.int64)
    for r, i in enumerate(rows):
        dist = np.empty(n, np.float64)
        a = np.asarray(x[i], np.float64)
        for s in range(0, n, chunk):
            diff = np.asarray(x[s:s + chunk], np.float64) - a
            dist[s:s + chunk] = np.einsum("jk,jk->j", diff, diff)
        others = np.delete(np.arange(n), i)
        d = np.delete(dist, i)
        order = np.lexsort((others, d))[:k]
        out[r, 0] = i
        out[r, 1:] = others[order]
    return out


def knn(x, k, block_size=2048, return_stats=False):
    """Indices of the k + 1 nearest rows of every row of ``x`` [N, D], by squared
    Euclidean distance: shape [N, k + 1] int64, column 0 the row itself, then the
    other rows by ascending (exact distance, index).

    The result equals a full stable sort of the exact (float64) distances, with the
    row itself moved first (it is first anyway unless it has duplicates, which tie
    with it at distance 0 and then follow in index order). Method: per block of
    ``block_size`` rows, float32 matrix products give approximate distances
    ||b||^2 - 2 a.b; a top-k selection keeps a candidate set somewhat larger than
    k per row; the candidates' distances are recomputed exactly in float64 and
    sorted by (distance, index). A rigorous float32 rounding-error bound then proves,
    row by row, that no row outside the candidate set can be nearer than (or tie
    with) the k-th chosen one; the rare rows where this cannot be proved are
    recomputed with a full exact pass. Memory: O(block_size * N) for the block of
    products; never an N x N matrix.

    With ``return_stats=True`` also returns a dict (candidates per row, number of
    rows that needed the exact fallback).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"knn expects a 2-D array [N, D], got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
            or x.dtype == np.bool_):
        raise ValueError(f"knn expects a numeric array, got dtype {x.dtype}")
    n, dim = x.shape
    k = int(k)
    if k < 1:
        raise ValueError(f"knn: k must be at least 1, got {k}")
    if k >= n:
        raise ValueError(f"knn: k={k} neighbours requested but there are only {n} rows "
                         f"(k must be at most N - 1 = {n - 1})")
    if int(block_size) < 1:
        raise ValueError(f"knn: block_size must be positive, got {block_size}")
    block_size = int(block_size)
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(f"knn: {bad.size} row(s) contain NaN or Inf (first: row {bad[0]}); "
                             "distances are undefined")
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)   # ||b||^2 in float64
    if not np.isfinite(norms).all():
        raise ValueError("knn: squared norms overflow float64; rescale the data")
    max_norm = float(np.sqrt(norms.max())) if n else 0.0
    # candidate search in float32 unless the values would overflow it
    max_sq = float(norms.max()) if n else 0.0
    gemm_dtype = np.float32 if max_sq < 1e30 and dim * _U32 < 0.01 else np.float64
    u = _U32 if gemm_dtype == np.float32 else _U64
    gamma = dim * u / (1 - dim * u)             # float32 (or 64) dot-product error factor
    gamma64 = (dim + 2) * _U64 / (1 - (dim + 2) * _U64)
    xg = np.ascontiguousarray(x, gemm_dtype)
    import tensorflow as tf  # top_k for the candidate selection
    key_norm = norms.astype(gemm_dtype)

    n_cand = n if k + 1 + max(16, k // 4) >= n else k + 1 + max(16, k // 4)
    out = np.empty((n, k + 1), np.int64)
    fallback = []
    # rows per exact chunk: about 8 MB of float64 differences stays in cache-friendly sizes
    sub = max(1, min(block_size, (1 << 20) // max(1, n_cand * dim)))
    for s in range(0, n, block_size):
        e = min(n, s + block_size)
        rows = np.arange(s, e)
        if n_cand == n:
            cand = np.broadcast_to(np.arange(n), (e - s, n))
            thresh = None
        else:
            neg = xg[s:e] @ xg.T               # a.b  (float32 GEMM, OpenBLAS)
            neg *= 2.0
            neg -= key_norm                    # 2 a.b - ||b||^2  (= ||a||^2 - d)
            neg[np.arange(e - s), rows] = np.inf    # the row itself is always a candidate
            # the n_cand largest of -key = the n_cand smallest approximate distances;
            # TensorFlow's top_k is multi-threaded and several times faster than
            # np.argpartition here (ties at the boundary do not matter: see below)
            vals, cand = tf.math.top_k(neg, n_cand, sorted=False)
            del neg
            cand = cand.numpy().astype(np.int64)
            # every row outside the candidates has key >= thresh
            thresh = -np.min(vals.numpy(), axis=1).astype(np.float64)
        # drop the row itself from its candidates (it goes to column 0)
        # (each row holds itself exactly once: forced in above, or all rows are candidates)
        others = cand[cand != rows[:, None]].reshape(e - s, -1)
        for c0 in range(0, e - s, sub):
            c1 = min(e - s, c0 + sub)
            dist = _exact_sq_dist(x, rows[c0:c1], others[c0:c1])
            order = np.lexsort((others[c0:c1], dist), axis=1)[:, :k]
            picked = np.take_along_axis(others[c0:c1], order, axis=1)
            out[s + c0:s + c1, 0] = rows[c0:c1]
            out[s + c0:s + c1, 1:] = picked
            if thresh is not None:
                kth = np.take_along_axis(dist, order[:, k - 1:k], axis=1)[:, 0]
                # every non-candidate j has key_j >= thresh, and |key_j - (d_j - ||a||^2)|
                # <= eps, so d_j >= thresh + ||a||^2 - eps; the choice is proved exact
                # when the k-th chosen distance is strictly below that
                na = norms[rows[c0:c1]]
                eps = (2 * gamma + 8 * u) * np.sqrt(na) * max_norm + 4 * u * max_sq \
                    + 4 * gamma64 * (na + max_sq)
                ok = kth < thresh[c0:c1] + norms[rows[c0:c1]] - eps
                fallback.extend(rows[c0:c1][~ok].tolist())
    if fallback:
        out[fallback] = _full_rows(x, np.asarray(fallback), k)
    if return_stats:
        return out, {"candidates": int(n_cand), "fallback_rows": len(fallback)}
    return out
