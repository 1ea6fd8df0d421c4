"""Cells as an axis (issue 27, item 2): cell i of a C-cell program (``stages.cells``, one
vmapped JAX program) equals that cell trained alone by the existing single-cell path
(``compile_dgg`` + ``net.step`` on ``BatchFeed`` batches, and ``fit_dgg`` for an epoch),
from the same starting weights with the same seed's batches and noise.

Tolerance: float32 rounding, |cell - alone| <= TOL * (1 + |alone|) with TOL = 1e-5 for
every loss and every parameter (vmap may batch the matrix products differently)."""
import os

import keras
import numpy as np
import pytest

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.cells import train_cells
from dgg_tf.stages.dgg import BatchFeed, compile_dgg, dgg_dataset, fit_dgg

pytestmark = [pytest.mark.backends,
              pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax",
                                 reason="the cell axis is a JAX program")]

TOL = 1e-5
TINY = DGGConfig(input_dim=12, encoder_dims=(9, 8, 16), latent_dim=3, n_clusters=4,
                 batch_size=20, num_neighbors=3, epochs=1)
#: two seeds, two learning rates: one program
CELLS = [{"seed": 0, "learning_rate": 2e-3}, {"seed": 1, "learning_rate": 2e-3},
         {"seed": 1, "learning_rate": 5e-3}]
#: settings read as constants (gmm_coefficient, the prior switch) split the cells into
#: programs: two here
SPLIT = [{"seed": 0}, {"seed": 1, "gmm_coefficient": 1.0, "prior": "paper"}]


def tiny_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12)).astype(np.float32)
    table = np.stack([np.arange(n)] + [rng.permutation(n) for _ in range(3)], 1)
    return x, table.astype(np.int32)


def starts(n):
    """Per-cell starting weights (as the stages before DGG would give each seed)."""
    out = []
    for i in range(n):
        keras.utils.set_random_seed(100 + i)
        out.append(get_params(DGGNetwork(TINY)))
    return out


def close(a, b):
    """max |a - b| over the arrays, asserting each is within the tolerance."""
    worst = 0.0
    for k in b:
        d = np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))
        assert np.all(d <= TOL * (1 + np.abs(b[k]))), (k, d.max())
        worst = max(worst, float(d.max()))
    return worst


def alone_steps(cfg, start, x, table, steps):
    """The single-cell path: ``net.step`` on ``BatchFeed`` batches of the cell's seed."""
    net = compile_dgg(DGGNetwork(cfg))
    set_params(net, start)
    feed = BatchFeed(x, table, cfg)
    data = dgg_dataset(table, None, cfg, 0, 1)
    losses = [float(net.step(feed.assemble(data[s]))["loss"]) for s in range(steps)]
    return get_params(net), losses


@pytest.mark.parametrize("case", ["steps", "epoch"])
def test_cell_equals_cell_alone(case):
    """3 steps (one epoch of 60 rows: ``net.step`` alone) with cells split into
    programs (two), and one epoch of 100 rows (5 steps: ``fit_dgg`` alone) with two seeds and
    two learning rates in one program; the epoch's mean loss and every parameter agree."""
    x, table = tiny_data(60 if case == "steps" else 100)
    cells = SPLIT if case == "steps" else CELLS
    start = starts(len(cells))
    got = train_cells(TINY, x, table, start, cells, epochs=1)
    diffs = []
    for cell, s, r in zip(cells, start, got):
        cfg = TINY.replace(**cell)
        if case == "steps":
            params, losses = alone_steps(cfg, s, x, table, 3)
            loss = float(np.mean(losses))
        else:
            net = compile_dgg(DGGNetwork(cfg))
            set_params(net, s)
            loss = fit_dgg(net, x, table, epochs=1, verbose=0)[-1]["loss"]
            params = get_params(net)
        assert abs(r["history"][-1]["loss"] - loss) <= TOL * (1 + abs(loss))
        diffs.append(max(close(r["params"], params), abs(r["history"][-1]["loss"] - loss)))
    # the cells really differ: seed and learning rate change the result
    assert not np.allclose(got[0]["params"]["gmm/mean"], got[1]["params"]["gmm/mean"])
    assert not np.allclose(got[-2]["params"]["gmm/mean"], got[-1]["params"]["gmm/mean"])
    print(f"max |cell - alone| ({case}): {max(diffs):.3g}")
