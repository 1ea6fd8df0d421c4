"""The encoder's two heads, computed as one matrix product, against two Dense calls."""
import numpy as np
import pytest
import tensorflow as tf

from dgg_tf.config import DGGConfig
from dgg_tf.models import DGGNetwork


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
    np.testing.assert_array_equal(mean.numpy(), mean2.numpy())
    np.testing.assert_array_equal(logvar.numpy(), logvar2.numpy())
    # Gradients below the heads differ by rounding only: in bfloat16 the two-layer path
    # rounds d(h) twice (two products, then their sum), the single product once.
    tol = 1e-5 if precision == "float32" else 2e-2
    variables = enc.trainable_variables
    for g, g2, v in zip(tape.gradient(loss, variables), tape.gradient(loss2, variables), variables):
        g, g2 = g.numpy(), g2.numpy()
        np.testing.assert_allclose(g, g2, rtol=tol, atol=tol * np.abs(g2).max(), err_msg=v.name)
