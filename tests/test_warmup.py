"""The diagnostic learning-rate warm-up (``lr_warmup_steps``, in neither the code nor
the paper): off in both presets, the rate of step t is the schedule's times
min(1, (t + 1) / N) in the update itself, with the StepLR schedule (Q8) and across a
resume; N = 0 and N = 1 leave the step as it was."""
import keras
import numpy as np
import pytest
from test_fit import TINY, tiny_data

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.optimizers import TorchAdam, warmup_factor
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.dgg import compile_dgg, train_dgg
from dgg_tf.train.checkpoint import restore_network

G = np.array([[0.3, -1.2, 2.0], [0.05, 0.7, -0.4]], np.float32)   # a constant gradient


def updates(optimizer, steps):
    """Each step's weight change under the constant gradient G (so Adam's m and v, and
    with them the update before the rate, do not depend on the weights)."""
    var = keras.Variable(np.zeros_like(G))
    out = []
    for _ in range(steps):
        before = var.numpy().copy()
        optimizer.apply_gradients([(G, var)])
        out.append(var.numpy() - before)
    return out


def test_off_in_both_presets():
    for variant in ("code", "paper"):
        assert DGGConfig.preset(variant).lr_warmup_steps == 0


@pytest.mark.parametrize("n", [4, 6])
def test_rate_at_steps_0_half_n_and_n_plus_1(n):
    """The update of step t is the un-warmed one times min(1, (t + 1) / N): at t = 0,
    N/2, N and N + 1 that is 1/N, (N/2 + 1)/N, 1 and 1."""
    plain = updates(TorchAdam(0.01), n + 2)
    warm = updates(TorchAdam(0.01, warmup_steps=n), n + 2)
    for t in (0, n // 2, n, n + 1):
        want = min(1.0, (t + 1) / n)
        np.testing.assert_allclose(warm[t], want * plain[t], rtol=1e-6)
        assert float(warmup_factor(t, n)) == pytest.approx(want)
    assert float(warmup_factor(0, n)) == pytest.approx(1 / n)
    assert not np.allclose(warm[0], plain[0])


class RateRecorder(keras.callbacks.Callback):
    """The rate each DGG step runs at: the schedule's (set per epoch) times the warm-up."""

    def __init__(self, n):
        super().__init__()
        self.n, self.rates = n, []

    def on_train_batch_begin(self, batch, logs=None):
        opt = self.model.optimizer
        self.rates.append(float(opt.learning_rate) * float(warmup_factor(opt.iterations, self.n)))


def test_with_the_step_lr_schedule():
    """5 steps an epoch, StepLR(1, 0.5) stepped at epoch start (Q8), warm-up over 8 steps:
    step t runs at 0.002 * 0.5 ** ((e + 1) // 1) * min(1, (t + 1) / 8), e = t // 5."""
    x, table, y = tiny_data()
    cfg = TINY.replace(epochs=3, lr_step=1, lr_gamma=0.5, lr_warmup_steps=8)
    net = compile_dgg(DGGNetwork(cfg))
    rec = RateRecorder(8)
    train_dgg(net, x, table, y, callbacks=[rec], verbose=0)
    want = [0.002 * 0.5 ** (t // 5 + 1) * min(1.0, (t + 1) / 8) for t in range(15)]
    assert rec.rates == pytest.approx(want, rel=1e-6)


def _trained(cfg, params, epochs, start=None):
    """A compiled net from ``params`` trained ``epochs`` epochs (``start``: (params,
    optimizer arrays, epoch) to resume from)."""
    x, table, y = tiny_data()
    net = compile_dgg(DGGNetwork(cfg))
    set_params(net, params)
    initial = 0
    if start is not None:
        restore_network(net, start[0], start[1])
        initial = start[2]
    train_dgg(net, x, table, y, initial_epoch=initial, epochs=epochs, verbose=0)
    return net


def test_resume_continues_the_ramp_and_zero_or_one_changes_nothing():
    """A run resumed after epoch 1 of a warm-up that spans 8 steps (5 an epoch) ends with
    the weights of the uninterrupted run, bit for bit (same process); N = 1 multiplies
    every rate by exactly 1, so it equals N = 0 bit for bit; N = 8 does not."""
    keras.utils.set_random_seed(0)
    params = get_params(DGGNetwork(TINY))
    warm = TINY.replace(lr_warmup_steps=8)
    whole = get_params(_trained(warm, params, 2))
    first = _trained(warm, params, 1)
    state = (get_params(first), [np.asarray(v) for v in first.optimizer.variables], 1)
    resumed = get_params(_trained(warm, params, 2, start=state))
    for k in whole:
        np.testing.assert_array_equal(resumed[k], whole[k])
    off = get_params(_trained(TINY, params, 2))
    one = get_params(_trained(TINY.replace(lr_warmup_steps=1), params, 2))
    for k in off:
        np.testing.assert_array_equal(one[k], off[k])
    assert any(not np.array_equal(whole[k], off[k]) for k in off)


def test_the_report_lists_diagnostics_apart():
    from dgg_tf.report.markdown import diagnostics_line, other_switches
    cfg = TINY.replace(lr_warmup_steps=8).to_dict()
    assert diagnostics_line(cfg) == "lr_warmup_steps=8"
    assert "lr_warmup_steps" not in other_switches(cfg)
    assert diagnostics_line({}) == "lr_warmup_steps=n/a"
