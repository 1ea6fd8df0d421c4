"""The graph: similarity weights w_ij between a sample and its neighbours (section 6),
in NumPy (the audit, the reference) and in ``keras.ops`` (the training step)."""
from __future__ import annotations

import numpy as np
from keras import ops

from dgg_tf.core.config import CHOICES, SIGMA_ROW

SIMILARITIES = CHOICES["similarity"]
# The weight of column 0 relative to a neighbour's for the kinds that ignore the
# inputs (as a function of Nn), and the kernel of each kind that uses distances.
CONSTANT_SELF = {"no_inform": lambda nn: 1.0,
                 "kl": lambda columns: 1.0 / columns}
KERNELS = {"gauss": lambda d, xp: xp.exp(-d),
           "inv_gauss": lambda dist, xp: xp.exp(dist),
           "student_t": lambda r, xp: 1.0 / (1.0 + r)}
SIGMA_MODES_IMPLEMENTED = ("code", "honoured")   # each has a branch below


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
    _check_kind(kind, sigma_mode)
    batch, nn = x_nbrs.shape[:2]
    if sigma_mode == "code" and batch <= SIGMA_ROW:
        raise ValueError(
            f"sigma_mode='code' needs a batch of at least {SIGMA_ROW + 1} samples (got {batch}): "
            f"the original takes sigma from row {SIGMA_ROW} of the batch's sorted distances and "
            "raises IndexError on smaller batches (Q7); use sigma_mode='honoured' or a larger batch")
    if kind in CONSTANT_SELF:
        w = np.full((batch, nn), 1.0 / (nn - 1), np.float32)
        w[:, 0] = CONSTANT_SELF[kind](nn)
        return w / w.sum(axis=1, keepdims=True)
    dist = pairwise_to_self(x_nbrs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if sigma_mode == "code":
            dist = dist / np.sort(dist, axis=1)[SIGMA_ROW][None, :]
        else:
            if not sigma > 0:
                raise ValueError(f"sigma must be positive, got {sigma}")
            dist = dist / np.float32(sigma)
        s = KERNELS[kind](dist, np).astype(np.float32)
        s[:, 0] = s[:, 1:].sum(axis=1)
        if kind != "gauss":
            s = s / s.sum(axis=1, keepdims=True)
    return s.astype(np.float32)


def _check_kind(kind, sigma_mode):
    """ValueError for a similarity kind or sigma mode without a formula here."""
    if kind not in CONSTANT_SELF and kind not in KERNELS:
        raise ValueError(f"similarity kind {kind!r} unknown; choose one of "
                         f"{', '.join(k for k in SIMILARITIES if k in CONSTANT_SELF or k in KERNELS)}")
    if sigma_mode not in SIGMA_MODES_IMPLEMENTED:
        raise ValueError(f"sigma_mode must be one of {', '.join(SIGMA_MODES_IMPLEMENTED)}, "
                         f"got {sigma_mode!r}")


def needs_distances(kind):
    """Whether a similarity kind depends on the inputs (else its weights are constant)."""
    return kind not in CONSTANT_SELF


def similarity_weights_ops(x_nbrs, sigma=10.0, kind="no_inform", sigma_mode="code",
                          sigma_row=None):
    """``similarity_weights`` inside the training step (on the device, no host trip).

    ``sigma_row`` [Nn, D] is batch row ``SIGMA_ROW``'s columns, needed by
    ``sigma_mode="code"`` (Q7) for a distance kind: passed separately so that a replica
    holding part of the batch still divides by the whole batch's row. Same float32
    formulas as the NumPy version; a sum over D may round differently.
    """
    _check_kind(kind, sigma_mode)
    nn = x_nbrs.shape[1]
    if not needs_distances(kind):
        w = similarity_weights(np.zeros((SIGMA_ROW + 1, nn, 1), np.float32), sigma, kind,
                               sigma_mode)[0]
        return ops.tile(ops.convert_to_tensor(w)[None], (ops.shape(x_nbrs)[0], 1))
    dist = ops.sum(ops.square(x_nbrs - x_nbrs[:, :1, :]), axis=-1)           # [B, Nn]
    if sigma_mode == "code":
        row = ops.sum(ops.square(sigma_row - sigma_row[:1]), axis=-1)        # [Nn]
        dist = dist / ops.sort(row)[None, :]
    else:
        dist = dist / ops.convert_to_tensor(sigma, "float32")
    s = KERNELS[kind](dist, ops)
    s = ops.concatenate([ops.sum(s[:, 1:], axis=1, keepdims=True), s[:, 1:]], axis=1)
    if kind != "gauss":
        s = s / ops.sum(s, axis=1, keepdims=True)
    return s
