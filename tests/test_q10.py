"""Q10: the gmm coefficient switch, by hand in NumPy, for both values."""
import math

import numpy as np
import pytest
import tensorflow as tf

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.objective import elbo_terms

pytestmark = pytest.mark.backends    # also run with KERAS_BACKEND=jax in CI


def _inputs(seed=0, r=6, d=5, m=3, k=4):
    g = np.random.default_rng(seed)
    target = g.uniform(0, 1, (r, d)).astype(np.float32)
    recon = g.uniform(0.05, 0.95, (r, d)).astype(np.float32)
    mean = g.normal(size=(r, m)).astype(np.float32)
    logvar = g.normal(scale=0.3, size=(r, m)).astype(np.float32)
    gamma = g.dirichlet(np.ones(k), r).astype(np.float32)
    log_pc = np.log(g.dirichlet(np.ones(k), r)).astype(np.float32)
    w = g.uniform(0, 1, r).astype(np.float32)
    gmm_mean = g.normal(size=(m, k)).astype(np.float32)
    gmm_std = g.uniform(0.5, 2, (m, k)).astype(np.float32)
    return target, recon, mean, logvar, gamma, log_pc, w, gmm_mean, gmm_std


def _gmm_by_hand(c, mean, logvar, gamma, w, gmm_mean, gmm_std):
    mean, logvar, gamma, w = (a.astype(np.float64) for a in (mean, logvar, gamma, w))
    var = gmm_std.astype(np.float64) ** 2
    total = 0.0
    for r in range(len(mean)):
        for k in range(gamma.shape[1]):
            s = sum(math.log(2 * math.pi * var[d, k])
                    + ((mean[r, d] - gmm_mean[d, k]) ** 2 + math.exp(logvar[r, d])) / var[d, k]
                    for d in range(mean.shape[1]))
            total += w[r] * gamma[r, k] * (-c * s)
    return total


@pytest.mark.parametrize("c", [0.5, 1.0])
def test_gmm_term_by_hand(c):
    a = _inputs()
    terms = elbo_terms(*(tf.constant(v) for v in a), gmm_coefficient=c)
    _, _, mean, logvar, gamma, _, w, gm, gs = a
    assert float(terms["gmm"]) == pytest.approx(_gmm_by_hand(c, mean, logvar, gamma, w, gm, gs),
                                                rel=1e-5)


def test_half_is_the_code_bit_for_bit_and_one_doubles_it():
    a = [tf.constant(v) for v in _inputs(1)]
    half, one = elbo_terms(*a), elbo_terms(*a, gmm_coefficient=1.0)
    _, _, mean, logvar, gamma, _, w, gm, gs = a
    # the code's formula as written before the switch existed
    var = tf.square(gs)
    log_norm = -0.5 * tf.reduce_sum(tf.math.log(var * (2.0 * math.pi)), axis=0)
    sq = tf.square(mean[:, :, None] - gm[None]) + tf.exp(logvar)[:, :, None]
    log_pz = log_norm - 0.5 * tf.reduce_sum(sq / var[None], axis=1)
    code = tf.reduce_sum(w * tf.reduce_sum(gamma * log_pz, axis=1))
    assert float(half["gmm"]) == float(code)
    assert float(one["gmm"]) == 2.0 * float(half["gmm"])
    for k in half:
        if k != "gmm":
            assert float(one[k]) == float(half[k])


def test_switch_validation_and_set():
    assert DGGConfig().gmm_coefficient == 0.5
    assert DGGConfig.preset("paper").gmm_coefficient == 0.5
    assert DGGConfig().with_assignments(["gmm_coefficient=1"]).gmm_coefficient == 1.0
    with pytest.raises(ValueError, match="gmm_coefficient=0.7 is not allowed; choose one of 0.5, 1.0"):
        DGGConfig(gmm_coefficient=0.7)
