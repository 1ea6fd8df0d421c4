"""The encoder's two heads, computed as one matrix product, against two Dense calls."""
import numpy as np
import pytest
import tensorflow as tf

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.models import DGGNetwork


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_heads_in_one_product_equal_two_dense_layers(precision):
    cfg = DGGConfig(input_dim=64, encoder_dims=(64, 64, 128), precision=precision)
    enc = DGGNetwork(cfg).encoder
    x = tf.constant(np.random.default_rng(0).random((50, 64), dtype=np.float32))
    with tf.GradientTape(persistent=True) as tape:
        mean, logvar = enc(x)
        h = x
        for layer in enc.hidden:
            h = layer(h)
        mean2 = tf.cast(enc.mean_head(h), tf.float32)
        logvar2 = tf.cast(enc.logvar_head(h), tf.float32)
        loss, loss2 = (tf.reduce_sum(m * m) + tf.reduce_sum(tf.exp(lv))
                       for m, lv in ((mean, logvar), (mean2, logvar2)))
    assert mean.dtype == logvar.dtype == tf.float32
    # Equal to rounding, not bit for bit: the fused product (64 x 256) and the two
    # 64 x 128 products are different matrix shapes, and oneDNN/Eigen pick their GEMM
    # kernel (blocking, FMA order) per shape and per CPU (AVX-512 vs AVX2), so the
    # accumulation order of each 64-term dot product may differ. Measured: bit equal on
    # an AVX-512 Xeon, ~3e-8 apart on an AVX2-only EPYC. The bound is a few float32 ulps
    # of the output's scale (eps = 1.2e-7); in mixed_bfloat16 the float32 accumulators
    # are rounded to bfloat16 (eps = 7.8e-3), so a last-bit difference before that
    # rounding may become one bfloat16 ulp.
    out_tol = 1e-6 if precision == "float32" else 8e-3
    for a, b in ((mean, mean2), (logvar, logvar2)):
        a, b = a.numpy(), b.numpy()
        np.testing.assert_allclose(a, b, rtol=out_tol, atol=out_tol * np.abs(b).max())
    # Gradients below the heads differ by rounding only: in bfloat16 the two-layer path
    # rounds d(h) twice (two products, then their sum), the single product once.
    tol = 1e-5 if precision == "float32" else 2e-2
    variables = enc.trainable_variables
    for g, g2, v in zip(tape.gradient(loss, variables), tape.gradient(loss2, variables), variables):
        g, g2 = g.numpy(), g2.numpy()
        np.testing.assert_allclose(g, g2, rtol=tol, atol=tol * np.abs(g2).max(), err_msg=v.name)
