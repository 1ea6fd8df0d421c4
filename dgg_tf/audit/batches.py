"""One pass over the audit batches for the quirks measured on the loss (Q4, Q7, Q9,
Q10). Per batch, the configured setting's loss, gradient and classifier outputs are
computed once (``BatchPass``) and handed to each quirk's per-batch function; each
quirk keeps its own list of per-batch records and summarises it at the end."""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np
from keras import ops

from dgg_tf.backend import gradient_function
from dgg_tf.numerics.graph import similarity_weights
from dgg_tf.numerics.objective import forward_terms, from_rows, to_rows
from dgg_tf.numerics.objective_numpy import as_tensors, loss_and_gradients
from dgg_tf.report.stats import flat


@dataclasses.dataclass
class BatchPass:
    """One audit batch under the configured settings: inputs, similarity weights ``w``,
    per-sample loss terms and flat gradient; the loss and gradient under the other gmm
    coefficient from the same tape (Q10); gamma of x_mean and of the sampled z, [B, Nn, K]."""
    x_nbrs: np.ndarray
    eps: np.ndarray
    w: np.ndarray
    terms: dict
    grad: np.ndarray
    loss_one: float
    grad_one: np.ndarray
    gamma_mean: np.ndarray
    gamma_sample: np.ndarray


class BatchQuirk(NamedTuple):
    """A quirk measured on the batches: ``per_batch(ctx, BatchPass) -> record`` and
    ``result(ctx, records) -> measurements``."""
    per_batch: Callable
    result: Callable


def per_sample(terms, loss, bsz):
    """Loss terms divided by the batch size (ELBO sums / B), plus the loss itself."""
    out = {k: float(v) / bsz for k, v in terms.items()}
    out["loss"] = float(loss)
    return out


def loss_and_flat_gradient(net, x_nbrs, w, eps, config):
    """Per-sample terms and the flat gradient of the loss under ``config``."""
    terms, loss, grads = loss_and_gradients(net, x_nbrs, w, eps, config)
    return per_sample(terms, loss, x_nbrs.shape[0]), flat(grads)


def _gammas(net, x_nbrs, eps):
    """gamma of x_mean and of the sampled z, both [B, Nn, K] (one forward pass)."""

    nn = x_nbrs.shape[1]
    mean, logvar = net.encoder(to_rows(ops.convert_to_tensor(x_nbrs)))
    z = mean + ops.exp(0.5 * logvar) * to_rows(ops.convert_to_tensor(eps))
    g_mean = ops.convert_to_numpy(from_rows(net.classify(mean), nn)).astype(np.float64)
    g_sample = ops.convert_to_numpy(from_rows(net.classify(z), nn)).astype(np.float64)
    return g_mean, g_sample


def _other_coefficient(c):
    """The gmm coefficient (Q10) the audit compares with the configured ``c``."""
    return 1.0 if c == 0.5 else 0.5


def configured_pass(net, x_nbrs, eps, config):
    """The ``BatchPass`` of one batch: the loss and gradient of the
    configured gmm coefficient and of the other one (Q10: 1/2 the code, 1 the main text);
    ``loss_one`` and ``grad_one`` hold the other's."""

    bsz = x_nbrs.shape[0]
    w = similarity_weights(x_nbrs, config.sigma, config.similarity, config.sigma_mode)
    # the other gmm coefficient (Q10): the gmm term scaled by other / configured
    scale = _other_coefficient(config.gmm_coefficient) / config.gmm_coefficient - 1.0

    def both(*batch):
        terms, loss, _ = forward_terms(net, *batch, config)
        return loss, (terms, loss - terms["gmm"] * scale / float(bsz))

    def other(*batch):
        loss, (terms, loss_one) = both(*batch)
        return loss_one, None
    batch = as_tensors(x_nbrs, w, eps)
    variables = net.trainable_variables
    loss, (terms, loss_one), grads = gradient_function(variables, both, compile=False)(*batch)
    grad = flat([ops.convert_to_numpy(g) for g in grads])
    grad_one = flat([ops.convert_to_numpy(g) for g in
                     gradient_function(variables, other, compile=False)(*batch)[2]])
    g_mean, g_sample = _gammas(net, x_nbrs, eps)
    return BatchPass(x_nbrs, eps, w, per_sample({k: float(v) for k, v in terms.items()},
                                                float(loss), bsz),
                     grad, float(loss_one), grad_one, g_mean, g_sample)


def run_on_batches(ctx, quirks):
    """Measure ``quirks`` ({quirk id: BatchQuirk}) in one pass over ``ctx.batches``;
    returns {quirk id: measurements}."""
    records = {qid: [] for qid in quirks}
    n = len(ctx.batches)
    for i, (_, x_nbrs, eps) in enumerate(ctx.batches):
        ctx.log(f"batch {i + 1}/{n}")
        bp = configured_pass(ctx.net, x_nbrs, eps, ctx.config)
        for qid, quirk in quirks.items():
            records[qid].append(quirk.per_batch(ctx, bp))
    return {qid: quirk.result(ctx, records[qid]) for qid, quirk in quirks.items()}
