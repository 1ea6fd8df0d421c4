"""The DGG objective (sections 7-8): prior, ELBO terms and the loss.

One implementation serves the training step and the audit API:
``forward_terms`` is what ``DGGNetwork.train_step`` differentiates, and
``objective_numpy.loss_terms`` / ``prior`` call the same code on NumPy inputs.

Rows: a batch of B samples with Nn columns (column 0 = the sample itself) is
flattened into R = B * Nn rows r = i * Nn + j, a reshape without a copy. The
original stacks the columns instead (r = j * B + i); the order of the rows changes
only the order of the sums over r, i.e. float32 rounding, as any other kernel would.
The encoder sees the neighbour x_ij; the reconstruction target is the sample x_i.
"""
from __future__ import annotations

import math

from keras import ops

from dgg_tf import backend
from dgg_tf.core.config import CHOICES

TERMS = ("reconstruction", "gmm", "cluster_entropy", "latent_entropy", "prior")
LOG_EPS = 1e-10  # the original's epsilon inside log(xhat), log(1 - xhat) and log(gamma)


def prior_ops(gamma_nbrs, w, mode):
    """Per-sample cluster prior [B, K] from gamma_nbrs [B, Nn, K] and weights w [B, Nn].

    "code": pc_i = sum_j w_ij gamma_ij over all columns, self included, NOT normalised.
    "paper" (Q9): pi_ik proportional to sum_{j >= 1} w_ij (gamma_ik + gamma_jk),
    normalised over k; column 0 is gamma_i itself.
    """
    w = ops.cast(w, gamma_nbrs.dtype)
    if mode == "code":
        return ops.einsum("bj,bjk->bk", w, gamma_nbrs)
    if mode != "paper":
        raise ValueError(f"prior mode must be one of {', '.join(CHOICES['prior'])}, got {mode!r}")
    pairs = gamma_nbrs[:, :1, :] + gamma_nbrs[:, 1:, :]
    numerator = ops.einsum("bj,bjk->bk", w[:, 1:], pairs)
    return numerator / ops.sum(numerator, axis=1, keepdims=True)


def reconstruction_rows(target, recon, likelihood="bernoulli", scale=1.0):
    """log p(x | z) per row, summed over features: "bernoulli" (the MNIST code, xhat a
    sigmoid output) sum x log(xhat + 1e-10) + (1 - x) log(1 - xhat + 1e-10); "gaussian"
    (the Reuters/HAR scripts, xhat linear) -0.5 * scale * sum (x - xhat)^2."""
    if likelihood == "gaussian":
        return -0.5 * scale * ops.sum(ops.square(target - recon), axis=-1)
    if likelihood != "bernoulli":
        raise ValueError(f"likelihood must be one of {', '.join(CHOICES['likelihood'])}, "
                         f"got {likelihood!r}")
    return ops.sum(target * ops.log(recon + backend.log_eps())
                         + (1.0 - target) * ops.log((1.0 - recon) + backend.log_eps()), axis=-1)


def elbo_terms(target, recon, mean, logvar, gamma, log_pc, w_rows, gmm_mean, gmm_std,
               gmm_coefficient=0.5, likelihood="bernoulli", scale=1.0):
    """The five weighted ELBO sums (each sum_r w_r * term_r), float32 scalars.

    target, recon [R, D] (or any broadcastable pair whose leading axes flatten to R,
    e.g. [B, 1, D] and [B, Nn, D]); mean, logvar [R, M]; gamma, log_pc [R, K]; w_rows [R];
    gmm_mean, gmm_std [M, K] (only std**2 is used, so std may go negative).
    ``gmm_coefficient`` multiplies sum_d [log(2 pi s^2) + ((mu - m)^2 + exp(logvar)) / s^2]
    in E[log p(z|c)]: 1/2 the code's and the supplement's, 1 the main text's (Q10).
    ``likelihood`` and ``scale``: the reconstruction term (``reconstruction_rows``).
    """
    recon_r = ops.reshape(reconstruction_rows(target, recon, likelihood, scale), (-1,))
    var = ops.square(gmm_std)                                             # [M, K]
    c = gmm_coefficient                                                  # 0.5: the code (Q10)
    log_norm = -c * ops.sum(ops.log(var * (2.0 * math.pi)), axis=0)      # [K]
    sq = ops.square(mean[:, :, None] - gmm_mean[None]) + ops.exp(logvar)[:, :, None]
    log_pz = log_norm - c * ops.sum(sq / var[None], axis=1)       # [R, K]
    per_row = {
        "reconstruction": recon_r,
        "gmm": ops.sum(gamma * log_pz, axis=1),
        "cluster_entropy": ops.sum(-gamma * ops.log(gamma + backend.log_eps()), axis=1),
        "latent_entropy": 0.5 * ops.sum(logvar, axis=1),
        "prior": ops.sum(gamma * log_pc, axis=1),
    }
    return {name: ops.sum(w_rows * per_row[name]) for name in TERMS}


def to_rows(a):
    """[B, Nn, ...] -> [B * Nn, ...], row r = i * Nn + j."""
    a = ops.convert_to_tensor(a)
    return ops.reshape(a, (-1, *a.shape[2:]))


def from_rows(a, neighbours):
    """[B * Nn, ...] -> [B, Nn, ...]."""
    return ops.reshape(a, (-1, neighbours, *a.shape[1:]))


def sum_terms(terms):
    """The five terms' sum, in the order of ``TERMS``."""
    total = terms[TERMS[0]]
    for k in TERMS[1:]:
        total = total + terms[k]
    return total


def number(value):
    """A setting as the step reads it: a Python number as a float constant, or a traced
    scalar as it is (``stages.cells`` passes numeric settings per cell as data)."""
    return float(value) if isinstance(value, (int, float)) else value


def forward_terms(net, x_nbrs, w, eps, config, batch_size=None):
    """Forward pass of one step: returns (terms dict, loss, gamma [R, K] of the loss).

    x_nbrs [B, Nn, D], w [B, Nn], eps [B, Nn, M] (reparameterisation noise). The loss
    is -sum(terms) / batch_size, batch_size defaulting to B; a replica holding part of
    a batch passes the whole batch's size, so that the replicas' losses (and gradients)
    add up to the single-device ones.
    The code prior uses f2(x_mean) of these same (pre-step) weights without
    gradient, as the original's separate eval pass does; the paper prior uses the
    configured classifier input, also without gradient.
    """
    batch = ops.shape(x_nbrs)[0]
    nn = x_nbrs.shape[1]
    target = x_nbrs[:, :1, :]                 # [B, 1, D], broadcast over the Nn columns
    w_rows = to_rows(w)
    mean, logvar = net.encoder(to_rows(x_nbrs))
    z = mean + ops.exp(0.5 * logvar) * to_rows(eps)
    recon = from_rows(net.decoder(z), nn)     # [B, Nn, D]
    gamma_mean = net.classify(mean)
    gamma = gamma_mean if config.classifier_input == "mean" else net.classify(z)
    prior_source = gamma_mean if config.prior == "code" else gamma
    pc = prior_ops(from_rows(ops.stop_gradient(prior_source), nn), w, config.prior)
    log_pc = ops.log(pc)                  # no epsilon, as the original
    if config.prior == "paper":
        # The code's pc has no epsilon inside the log: if every gamma of a cluster in a
        # sample's neighbourhood is exactly 0 (a saturated softmax), pc = 0 and
        # 0 * log(0) = NaN, which stops training, as it would stop the original. The
        # paper's pi is 0 only where all the gammas multiplying its log are 0, and its
        # formula takes the limit 0 log 0 = 0 there.
        log_pc = ops.where(pc > 0, log_pc, 0.0)
    log_pc = ops.repeat(log_pc, nn, axis=0)    # row i * Nn + j gets sample i's prior
    terms = elbo_terms(target, recon, mean, logvar, gamma, log_pc, w_rows,
                       net.gmm.mean, net.gmm.std, number(config.gmm_coefficient),
                       config.likelihood, config.reconstruction_scale)
    if batch_size is None:
        batch_size = ops.cast(batch, "float32")
    loss = -sum_terms(terms) / batch_size
    return terms, loss, gamma
