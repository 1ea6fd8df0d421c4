"""Cells as an axis (issue 27, item 2): cell i of a C-cell program (``stages.cells``, one
vmapped JAX program) equals that cell trained alone by the existing single-cell path
(``compile_dgg`` + ``net.step`` on ``BatchFeed`` batches, and ``fit_dgg`` for an epoch),
from the same starting weights with the same seed's batches and noise: with numeric
settings per cell, structural switches split into programs, and a cell that diverges
(it stops; the others go on). Also: a resumed run (``initial_epoch``, optimiser states,
``steps_per_call`` 2) equals the straight one, and 2 host devices equal 1.

Tolerance: float32 rounding, |cell - alone| <= TOL * (1 + |alone|) with TOL = 1e-5 for
every loss and every parameter (vmap may batch the matrix products differently)."""
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.cells import _programs, train_cells
from dgg_tf.stages.dgg import BatchFeed, TrainingError, compile_dgg, dgg_dataset, fit_dgg

pytestmark = pytest.mark.backends
ON_JAX = os.environ.get("KERAS_BACKEND") == "jax"
jax_only = pytest.mark.skipif(not ON_JAX, reason="the cell axis is a JAX program")

TOL = 1e-5
TINY = DGGConfig(input_dim=12, encoder_dims=(9, 8, 16), latent_dim=3, n_clusters=4,
                 batch_size=20, num_neighbors=3, epochs=1)
#: seeds, learning rates, a warm-up (over the resume of test_resume_and_steps_per_call):
#: one program; a huge rate goes non-finite
CELLS = [{"seed": 0, "learning_rate": 2e-3},
         {"seed": 1, "learning_rate": 5e-3, "lr_warmup_steps": 5},
         {"seed": 2, "learning_rate": 1e30}]
#: every numeric setting differs in the first program (a gaussian likelihood, so that
#: reconstruction_scale counts, and sigma honoured, so that sigma does); the prior switch
#: splits off a second program
NUMERIC = TINY.replace(likelihood="gaussian", similarity="gauss", sigma_mode="honoured")
SPLIT = [{"seed": 0},
         {"seed": 1, "gmm_coefficient": 1.0, "sigma": 3.0, "reconstruction_scale": 0.1,
          "lr_warmup_steps": 2},
         {"seed": 1, "prior": "paper"}]


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


def fit_alone(cfg, start, x, table):
    """The single-cell path for one epoch: ``fit_dgg``; (params, loss or the stop)."""
    net = compile_dgg(DGGNetwork(cfg))
    set_params(net, start)
    try:
        loss = fit_dgg(net, x, table, epochs=1, verbose=0)[-1]["loss"]
    except TrainingError as e:
        return None, str(e)
    return get_params(net), loss


@jax_only
@pytest.mark.parametrize("case", ["steps", "epoch"])
def test_cell_equals_cell_alone(case):
    """3 steps (one epoch of 60 rows: ``net.step`` alone): every numeric setting per cell
    in one program, the prior switch in a second; one epoch of 100 rows (5 steps:
    ``fit_dgg`` alone) with seeds, learning rates and a warm-up in one program, where a
    cell with a huge rate goes non-finite and stops where ``fit_dgg`` stops, leaving the
    others as they are alone. The epoch's mean loss and every parameter agree."""
    x, table = tiny_data(60 if case == "steps" else 100)
    base, cells = (NUMERIC, SPLIT) if case == "steps" else (TINY, CELLS)
    configs = [base.replace(**c) for c in cells]
    assert len(_programs(configs, [1] * len(cells))) == (2 if case == "steps" else 1)
    start = starts(len(cells))
    got = train_cells(base, x, table, start, cells, epochs=1)
    diffs = []
    for cfg, s, r in zip(configs, start, got):
        if case == "steps":
            params, losses = alone_steps(cfg, s, x, table, 3)
            loss = float(np.mean(losses))
        else:
            params, loss = fit_alone(cfg, s, x, table)
        if params is None:           # fit_dgg stopped: the cell stops at the same batch
            where = loss.split(";")[0]
            assert r["stopped"].startswith(where) and r["history"] == [], (r["stopped"], loss)
            assert all(np.all(np.isfinite(a)) for a in r["params"].values())
            continue
        assert r["stopped"] is None
        assert abs(r["history"][-1]["loss"] - loss) <= TOL * (1 + abs(loss))
        diffs.append(max(close(r["params"], params), abs(r["history"][-1]["loss"] - loss)))
    # the cells really differ: seed, learning rate and the numbers change the result
    assert not np.allclose(got[0]["params"]["gmm/mean"], got[1]["params"]["gmm/mean"])
    if case == "steps":
        assert not np.allclose(got[1]["params"]["gmm/mean"], got[2]["params"]["gmm/mean"])
    print(f"max |cell - alone| ({case}): {max(diffs):.3g}")


@jax_only
def test_resume_and_steps_per_call():
    """2 epochs straight (``on_epoch`` after each) == 1 epoch, then resumed from what
    ``on_epoch`` gave after epoch 1 (weights and optimiser) for epoch 2 with 2 steps per
    call (a scan of 2 steps and a single one): parameters, optimiser and loss agree."""
    x, table = tiny_data(60)
    cells = CELLS[:2]
    seen = []
    straight = train_cells(TINY, x, table, starts(2), cells, epochs=2,
                           on_epoch=lambda e, r: seen.append((e, r)))
    assert [e for e, _ in seen] == [1, 2]
    first = seen[0][1]
    assert [len(r["history"]) for r in first] == [1, 1] and first[0]["stopped"] is None
    resumed = train_cells(TINY, x, table, [r["params"] for r in first], cells, epochs=2,
                          initial_epoch=1, optimizer_states=[r["optimizer"] for r in first],
                          steps_per_call=2)
    for a, b in zip(resumed, straight):
        close(a["params"], b["params"])
        close(dict(enumerate(a["optimizer"])), dict(enumerate(b["optimizer"])))
        assert [h["epoch"] for h in a["history"]] == [2]
        assert abs(a["history"][0]["loss"] - b["history"][1]["loss"]) <= \
            TOL * (1 + abs(b["history"][1]["loss"]))
    assert int(straight[0]["optimizer"][0]) == 6      # the step count: 2 epochs x 3 steps


SHARDED = textwrap.dedent("""
    import jax, numpy as np
    from tests.test_cells import TINY, TOL, CELLS, starts, tiny_data, close
    from dgg_tf.stages.cells import train_cells
    assert len(jax.devices()) == 2
    x, table = tiny_data(60)
    run = lambda d: train_cells(TINY, x, table, starts(3), CELLS[:3], epochs=1, devices=d)
    for a, b in zip(run(jax.devices()), run(jax.devices()[:1])):
        close(a["params"], b["params"])
        assert a["stopped"] == b["stopped"], (a["stopped"], b["stopped"])
        np.testing.assert_allclose([h["loss"] for h in a["history"]],
                                   [h["loss"] for h in b["history"]], rtol=TOL, atol=TOL)
    print("SHARDED OK")
""")


@jax_only
def test_cells_sharded_over_two_devices():
    """The cell axis over 2 host devices (3 cells, padded to 4; the third goes
    non-finite) == 1 device: parameters, losses and the stop."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # LLVM's optimisations off: compiles about twice as fast, both runs compiled alike
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": root,
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                        "--xla_backend_optimization_level=0"}
    done = subprocess.run([sys.executable, "-c", SHARDED], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert "SHARDED OK" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]


@pytest.mark.skipif(ON_JAX, reason="the JAX program: the tests above")
def test_cells_one_by_one_on_tensorflow(monkeypatch):
    """On TensorFlow the cells run one after another, each through all its epochs in one
    ``fit_dgg`` (no new trace per epoch): ``on_epoch`` after each epoch of each cell, with
    that cell's result and None for the other; a diverging cell stops with ``fit_dgg``'s
    message (``on_epoch`` once more, with it) while the other goes on, and the healthy
    cell resumed after epoch 1 equals it trained straight."""
    from dgg_tf.stages import cells as engine
    fits = []
    monkeypatch.setattr(engine, "fit_dgg", lambda *a, **k: fits.append(1) or fit_dgg(*a, **k))
    x, table = tiny_data(60)
    cells, seen = [CELLS[0], CELLS[2]], []
    straight = train_cells(TINY, x, table, starts(2), cells, epochs=2,
                           on_epoch=lambda e, r: seen.append((e, r)))
    assert len(fits) == 2                                   # one fit per cell
    assert [(e, [r is not None for r in rs]) for e, rs in seen] == [
        (1, [True, False]), (2, [True, False]), (1, [False, True])]
    assert seen[2][1][1]["stopped"] == straight[1]["stopped"]
    assert len(straight[0]["history"]) == 2 and seen[1][1][0]["history"] == straight[0]["history"]
    assert straight[1]["stopped"].startswith("loss is not finite at epoch 1, batch ")
    assert straight[1]["history"] == []
    first = seen[0][1][0]
    resumed = train_cells(TINY, x, table, [first["params"]], cells[:1], epochs=2,
                          initial_epoch=1, optimizer_states=[first["optimizer"]])
    close(resumed[0]["params"], straight[0]["params"])
    assert resumed[0]["history"][0]["loss"] == straight[0]["history"][1]["loss"]
