"""Exact nearest neighbours (section 2): the k + 1 nearest rows of every row by squared
Euclidean distance, proved exact row by row, never with an N x N matrix. What every
neighbour table is built from (``tables``) and the Siamese pairs' raw-pixel neighbours.
The Keras backend's top_k selects float32 candidates. Also the neighbour tables built
from the search (``neighbor_table``, ``tables_of_embedding``: the one builder)."""
from __future__ import annotations

import time

import numpy as np
from keras import ops

from dgg_tf.core.config import CHOICES, DGGConfig
from dgg_tf.core.tables import neighbor_purity

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
    """Exact answer for some rows by a full float64 pass over all N rows (last resort)."""
    n = len(x)
    out = np.empty((len(rows), k + 1), np.int64)
    for r, i in enumerate(rows):
        dist = np.empty(n, np.float64)
        a = np.asarray(x[i], np.float64)
        for s in range(0, n, chunk):
            diff = np.subtract(x[s:s + chunk], a, dtype=np.float64)
            dist[s:s + chunk] = np.einsum("jk,jk->j", diff, diff)
        others = np.delete(np.arange(n), i)
        order = np.lexsort((others, np.delete(dist, i)))[:k]
        out[r, 0] = i
        out[r, 1:] = others[order]
    return out


def _top(keys, n_cand):
    """The ``n_cand`` largest keys of each row and their columns, exactly in the keys'
    dtype: ``keras.ops.top_k`` for float32 (faster than NumPy's partition), NumPy's
    ``argpartition`` for float64 (JAX without x64 would round float64 keys to float32,
    and the proof below needs the selection exact in the searcher's precision)."""
    if keys.dtype == np.float32:
        vals, cand = ops.top_k(keys, n_cand, sorted=False)
        return ops.convert_to_numpy(vals), ops.convert_to_numpy(cand).astype(np.int64)
    cand = np.argpartition(-keys, n_cand - 1, axis=1)[:, :n_cand].astype(np.int64)
    return np.take_along_axis(keys, cand, axis=1), cand


class _Searcher:
    """Candidate search in one precision (float32 or float64 matrix products) with a
    rigorous bound on its rounding error, shared by the blocks of ``knn``."""

    def __init__(self, x, norms, dtype):
        n, dim = x.shape
        self.x, self.norms, self.dim = x, norms, dim
        self.xg = np.ascontiguousarray(x, dtype)
        self.key_norm = norms.astype(dtype)
        self.max_sq = float(norms.max())
        self.max_norm = float(np.sqrt(self.max_sq))
        self.u = _U32 if dtype == np.float32 else _U64
        self.gamma = dim * self.u / (1 - dim * self.u)     # dot-product error factor
        self.gamma64 = (dim + 2) * _U64 / (1 - (dim + 2) * _U64)

    def rows(self, rows, k, n_cand, sub):
        """Neighbours of ``rows`` (sorted array) with ``n_cand`` candidates each:
        returns ``(result [len(rows), k + 1], proved mask)``."""
        x, n = self.x, len(self.x)
        m = len(rows)
        if n_cand >= n:
            cand = np.broadcast_to(np.arange(n), (m, n))
            thresh = None
        else:
            neg = self.xg[rows] @ self.xg.T             # a.b
            neg *= 2.0
            neg -= self.key_norm                        # 2 a.b - ||b||^2  (= ||a||^2 - d)
            neg[np.arange(m), rows] = np.inf            # the row itself is always a candidate
            vals, cand = _top(neg, n_cand)
            del neg
            # every row outside the candidates has key = d - ||a||^2 >= thresh
            # (ties at the boundary are harmless: they are outside and >= thresh too)
            thresh = -np.min(vals, axis=1).astype(np.float64)
        # each row holds itself exactly once: forced in above, or all rows are candidates
        others = cand[cand != rows[:, None]].reshape(m, -1)
        out = np.empty((m, k + 1), np.int64)
        proved = np.ones(m, bool)
        for c0 in range(0, m, sub):
            c1 = min(m, c0 + sub)
            dist = _exact_sq_dist(x, rows[c0:c1], others[c0:c1])
            order = np.lexsort((others[c0:c1], dist), axis=1)[:, :k]
            out[c0:c1, 0] = rows[c0:c1]
            out[c0:c1, 1:] = np.take_along_axis(others[c0:c1], order, axis=1)
            if thresh is not None:
                kth = np.take_along_axis(dist, order[:, k - 1:k], axis=1)[:, 0]
                # |key_j - (d_j - ||a||^2)| <= eps for every j, so a non-candidate has
                # d_j >= thresh + ||a||^2 - eps: the choice is proved exact when the
                # k-th chosen (exact) distance lies strictly below that
                na = self.norms[rows[c0:c1]]
                eps = (2 * self.gamma + 8 * self.u) * np.sqrt(na) * self.max_norm \
                    + 4 * self.u * self.max_sq + 4 * self.gamma64 * (na + self.max_sq)
                proved[c0:c1] = kth < thresh[c0:c1] + na - eps
        return out, proved


def _check_knn_input(x, k, block_size):
    """knn's arguments, checked: (x as an array, k, block_size) or a ValueError."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"knn expects a 2-D array [N, D], got shape {x.shape}")
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"knn expects a numeric array, got dtype {x.dtype}")
    n = len(x)
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
    return x, k, block_size


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
    sorted by (distance, index). A rigorous rounding-error bound then proves, row by
    row, that no row outside the candidate set can be nearer than (or tie with) the
    k-th chosen one. Rows where this cannot be proved are searched again with
    float64 products and 4 times the candidates, and any still unproved row (e.g.
    more exact duplicates than candidates) with a full exact pass. Memory:
    O(block_size * N) for a block of products; never an N x N matrix.

    With ``return_stats=True`` also returns a dict: candidates per row, rows redone
    in float64, rows redone by the full pass.
    """
    x, k, block_size = _check_knn_input(x, k, block_size)
    n, dim = x.shape
    norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)   # ||b||^2 in float64
    if not np.isfinite(norms).all():
        raise ValueError("knn: squared norms overflow float64; rescale the data")
    # candidate search in float32 unless the values would overflow it (or D is huge)
    use32 = norms.max() < 1e30 and dim * _U32 < 0.01
    first = _Searcher(x, norms, np.float32 if use32 else np.float64)

    def n_cand_for(extra):
        c = k + 1 + extra
        return n if c >= n else c

    def sub_for(c):  # rows per exact chunk: about 8 MB of float64 differences
        return max(1, min(block_size, (1 << 20) // max(1, c * dim)))

    n_cand = n_cand_for(max(16, k // 4))
    out = np.empty((n, k + 1), np.int64)
    unproved = []
    for s in range(0, n, block_size):
        rows = np.arange(s, min(n, s + block_size))
        out[rows], proved = first.rows(rows, k, n_cand, sub_for(n_cand))
        unproved.append(rows[~proved])
    unproved = np.concatenate(unproved)
    stats = {"candidates": int(n_cand), "rows_refined": int(unproved.size), "rows_full_pass": 0}
    if unproved.size:
        second = first if not use32 else _Searcher(x, norms, np.float64)
        c2 = n_cand_for(4 * (n_cand - k - 1))
        still = []
        for s in range(0, unproved.size, block_size):
            rows = unproved[s:s + block_size]
            out[rows], proved = second.rows(rows, k, c2, sub_for(c2))
            still.append(rows[~proved])
        still = np.concatenate(still)
        if still.size:
            out[still] = _full_rows(x, still, k)
        stats["rows_full_pass"] = int(still.size)
    if return_stats:
        return out, stats
    return out


# ---------------------------------------------------------------- neighbour tables
def neighbor_table(embedding, config: DGGConfig, seed=0, knn_indices=None, mode=None):
    """The (N, 1 + table_columns) int32 neighbour table of an embedding.

    The ``table_top`` nearest of every sample (exact, ``knn.knn``; pass
    ``knn_indices`` [N, >= table_top + 1] to reuse them), then by ``mode``
    (default ``config.neighbor_selection``):
    "random_top100" (Q1, the original): column 0 (the sample) plus ``table_columns``
    columns drawn per row without replacement from columns 1..table_top, in the
    drawn order (the original's ``permutation(100)[:40] + 1``; seeded here);
    "nearest": column 0 plus the ``table_columns`` nearest, in order.
    """
    mode = mode or config.neighbor_selection
    if mode not in CHOICES["neighbor_selection"]:
        raise ValueError(f"neighbor_selection must be one of "
                         f"{', '.join(CHOICES['neighbor_selection'])}, got {mode!r}")
    top, cols = int(config.table_top), int(config.table_columns)
    if knn_indices is None:
        knn_indices = knn(np.asarray(embedding), top)
    knn_indices = np.asarray(knn_indices)
    if knn_indices.ndim != 2 or knn_indices.shape[1] < top + 1:
        raise ValueError(f"neighbor_table: knn_indices must be [N, >= {top + 1}], got "
                         f"{knn_indices.shape}")
    n = len(knn_indices)
    if mode == "nearest":
        table = knn_indices[:, :cols + 1]
    else:
        rng = np.random.default_rng(seed)
        picks = rng.permuted(np.broadcast_to(np.arange(1, top + 1), (n, top)), axis=1)[:, :cols]
        table = np.concatenate([knn_indices[:, :1], np.take_along_axis(knn_indices, picks, axis=1)],
                               axis=1)
    return np.ascontiguousarray(table, np.int32)


def tables_of_embedding(z, config: DGGConfig, seed=0, labels=None):
    """The one builder: the table of every selection mode of the rows of ``z`` (raw
    inputs or an embedding; one exact ``table_top``-NN search shared) and, with
    ``labels``, the purity of each table's ``num_neighbors`` training columns:
    ``(tables, purity, knn_seconds)``."""
    t = time.time()
    top = knn(z, config.table_top)
    seconds = round(time.time() - t, 2)
    tables = {mode: neighbor_table(z, config, seed=seed, knn_indices=top, mode=mode)
              for mode in CHOICES["neighbor_selection"]}
    purity = {} if labels is None else {
        mode: neighbor_purity(table, labels, config.num_neighbors) for mode, table in tables.items()}
    return tables, purity, seconds
