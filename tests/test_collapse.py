"""Collapse warnings: fire on a constructed collapse (f2 sends everything to one
cluster), not on a healthy epoch; records keep the flag; the report lists the epochs."""
import numpy as np
import pytest

from dgg_tf import report
from dgg_tf.core.collapse import classifier_acc, collapse_epochs, collapse_reasons
from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.stages.watch import collapse_callback

TINY = DGGConfig(input_dim=64, encoder_dims=(16, 16, 32), latent_dim=10, n_clusters=10,
                 batch_size=20, num_neighbors=3, epochs=1, classifier_epochs=1, seed=0)


@pytest.fixture(scope="module")
def data():
    g = np.random.default_rng(0)
    x = g.uniform(0, 1, (200, 64)).astype(np.float32)
    table = np.stack([np.arange(200)] + [g.permutation(200) for _ in range(3)], 1)
    return x, table


def _net(collapsed=False):
    """A tiny network; collapsed: f2 sends every sample to cluster 0 (finite softmax)."""
    net = DGGNetwork(TINY)
    if collapsed:
        net.classifier.kernel.assign(np.zeros(net.classifier.kernel.shape, np.float32))
        net.classifier.bias.assign(np.asarray([10.0] + [0.0] * 9, np.float32))
    return net


def _fire(net, x, record, reference, epochs=None):
    history = [dict(record)]
    cb = collapse_callback(history, x, TINY.n_clusters, reference, epochs=epochs)
    cb.set_model(net)
    cb.on_epoch_end(0)
    return history[-1]


def test_reasons():
    assert collapse_reasons({"clusters_used": 10, "full_acc": 0.8}, 10, 0.85) == []
    assert collapse_reasons({"clusters_used": 5, "full_acc": 0.43}, 10, 0.85) == []
    assert "4 of 10" in collapse_reasons({"clusters_used": 4}, 10, None)[0]
    assert "below half" in collapse_reasons({"clusters_used": 9, "full_acc": 0.4}, 10, 0.85)[0]
    assert classifier_acc([{"acc": 0.5}, {"acc": 0.7}]) == 0.7 and classifier_acc([]) is None


def test_fires_on_a_constructed_collapse(data, capsys):
    x, _ = data
    record = _fire(_net(collapsed=True), x, {"epoch": 1, "full_acc": 0.11}, 0.8)
    assert record["clusters_used"] == 1 and record["collapse"] == 1
    out = capsys.readouterr().out
    assert "WARNING: epoch 1" in out and "only 1 of 10 clusters" in out and "below half" in out
    assert "expected in a run this short" not in out          # the run's length not given


@pytest.mark.parametrize("epochs, short", [(3, True), (49, True), (50, False), (300, False)])
def test_short_runs_say_the_collapse_is_expected(data, capsys, epochs, short):
    x, _ = data
    _fire(_net(collapsed=True), x, {"epoch": 1, "full_acc": 0.11}, 0.8, epochs=epochs)
    out = capsys.readouterr().out
    assert "WARNING: epoch 1" in out
    assert ("expected in a run this short: DGG's first Adam step" in out) == short


def test_quiet_on_a_healthy_epoch(data, capsys):
    from dgg_tf.stages.dgg import encode
    x, _ = data
    net = _net()
    m = encode(net, x)                       # f2 = argmax of the standardised means
    scale = 1.0 / (m.std(0) + 1e-6)
    net.classifier.kernel.assign(np.diag(scale).astype(np.float32))
    net.classifier.bias.assign((-m.mean(0) * scale).astype(np.float32))
    record = _fire(net, x, {"epoch": 1, "full_acc": 0.7}, 0.8)
    assert record["clusters_used"] >= 5 and record["collapse"] == 0
    assert "WARNING" not in capsys.readouterr().out


def test_training_flags_and_report_lists(data, tmp_path, capsys):
    import keras

    from dgg_tf.stages.dgg import compile_dgg, train_dgg
    x, table = data
    keras.utils.set_random_seed(0)                 # the same initial network every call
    net = compile_dgg(_net(collapsed=True))
    y = np.arange(200) % 10
    history = []
    train_dgg(net, x, table, y, history=history, verbose=0,
              callbacks=[collapse_callback(history, x, TINY.n_clusters, 0.8)])
    assert history[-1]["clusters_used"] == 1 and history[-1]["collapse"] == 1
    assert "WARNING: epoch 1" in capsys.readouterr().out
    assert collapse_epochs(history) == [{"epoch": 1, "clusters_used": 1,
                                         "full_acc": history[-1]["full_acc"]}]
    rep = report.write_report(tmp_path, None, [{"name": "r", "history": history,
                                                "classifier_acc": 0.8}])
    md = (tmp_path / "report.md").read_text()
    assert "## Warnings" in md and "- r, epoch 1: collapse (1 clusters in use" in md
    assert rep["runs"][0]["warnings"]["collapse"][0]["epoch"] == 1
    report.plot_curves(tmp_path / "curves.png", [{"name": "r", "history": history,
                                                  "classifier_acc": 0.8}])
    assert (tmp_path / "curves.png").stat().st_size > 1000



class _Check:
    """Independent look at the model around the first steps: the full-pass ACC after
    each step (computed here, not by the callback under test) and the weights before
    and after step 1."""

    def __init__(self, x, y):
        import keras

        from dgg_tf.core.metrics import cluster_acc
        from dgg_tf.numerics.evaluation import predict
        check = self
        self.acc, self.before, self.after = {}, None, None

        class Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_begin(self, batch, logs=None):
                if self.epoch == 0 and batch == 0:
                    check.before = [w.numpy().copy() for w in self.model.encoder.weights]

            def on_train_batch_end(self, batch, logs=None):
                check.acc[(self.epoch, batch + 1)] = cluster_acc(y, predict(self.model, x))
                if self.epoch == 0 and batch == 0:
                    check.after = [w.numpy().copy() for w in self.model.encoder.weights]
        self.callback = Cb()


def _train(data, callbacks, epochs=2, per_execution=1):
    import keras

    from dgg_tf.stages.dgg import compile_dgg, train_dgg
    x, table = data
    keras.utils.set_random_seed(0)                 # the same initial network every call
    net = compile_dgg(DGGNetwork(TINY.replace(epochs=epochs)), steps_per_execution=per_execution)
    return train_dgg(net, x, table, np.arange(200) % 10, verbose=0, callbacks=callbacks)


def test_first_steps_recorded_after_the_listed_steps_only(data, capsys):
    from dgg_tf.stages.watch import first_steps_callback
    x, _ = data
    y = np.arange(200) % 10
    records, check = [], _Check(x, y)
    history = _train(data, [first_steps_callback(records, x, y, (3, 1), 0.8), check.callback])
    assert [e["step"] for e in records] == [1, 3]             # sorted; none in epoch 2
    for e in records:
        assert e["full_acc"] == check.acc[(0, e["step"])]
        assert 1 <= e["clusters_used"] <= 10 and 0 <= e["full_nmi"] <= 1
    assert "after DGG step 1: full-pass ACC" in capsys.readouterr().out
    # reading predictions leaves training as it was
    plain = _train(data, [])
    assert [r["loss"] for r in history] == [r["loss"] for r in plain]
    # Adam's first update (PyTorch's, as the original): m/sqrt(v) = g/|g|, so every
    # weight with a gradient well above eps moves by exactly the learning rate
    lr = TINY.learning_rate
    moved = np.concatenate([np.abs(a - b).ravel() for a, b in zip(check.after, check.before)])
    assert moved.max() <= lr * (1 + 1e-5)
    assert np.mean(np.isclose(moved, lr, rtol=1e-2)) > 0.9


def test_first_steps_with_several_steps_per_call(data):
    """With 5 steps per call the probe at step 1 lands after the first call (step 5)."""
    from dgg_tf.stages.watch import first_steps_callback
    x, _ = data
    y = np.arange(200) % 10
    records, check = [], _Check(x, y)
    _train(data, [first_steps_callback(records, x, y, (1, 7), say=lambda m: None),
                  check.callback], epochs=1, per_execution=5)
    assert [e["step"] for e in records] == [5, 10]
    assert [e["full_acc"] for e in records] == [check.acc[(0, 5)], check.acc[(0, 10)]]


def _stop_after_first_step():
    import keras

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True
    return Stop()


def _grab(out):
    """A callback that keeps every weight of the model at the end of training."""
    import keras

    class Grab(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            out.append([w.numpy() for w in self.model.weights])
    return Grab()


def test_first_step_script_probe_leaves_the_step_as_it_was(data, capsys):
    """reproduce/first_step.py's probe puts each part back and then forward again: the
    network after it equals the network after one plain step; its report says every
    encoder tensor moved by the learning rate."""
    import importlib.util
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("first_step", os.path.join(
        root, "reproduce", "first_step.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    x, _ = data
    y = np.arange(200) % 10
    nets = []
    for callbacks in ([script.first_step_probe(x, y)], [_stop_after_first_step()]):
        captured = []
        _train(data, callbacks + [_grab(captured)], epochs=1)
        nets.append(captured[0])
    for a, b in zip(*nets):
        np.testing.assert_array_equal(a, b)
    out = capsys.readouterr().out
    assert "with the encoder as before: full-pass ACC" in out
    rows = [line for line in out.splitlines() if "moved by lr" in line]
    assert len(rows) == 12 and all("encoder" in r or "classifier" in r for r in rows)
    assert all(float(r.split("moved by lr:")[1].split("%")[0]) > 90 for r in rows)



@pytest.mark.parametrize("prior", ["code", "paper"])
def test_saturated_softmax_code_prior_stops_naming_the_term(data, prior):
    """f2 saturated (softmax exactly 0 for nine clusters): the code prior's log(pc) has no
    epsilon (Q9), so 0 * log 0 = NaN stops training with the term named; the paper
    prior takes the limit 0 and trains on."""
    import keras

    from dgg_tf.stages.dgg import compile_dgg, train_dgg
    from dgg_tf.train.callbacks import TrainingError
    x, table = data
    keras.utils.set_random_seed(0)
    net = DGGNetwork(TINY.replace(prior=prior))
    net.classifier.kernel.assign(np.zeros(net.classifier.kernel.shape, np.float32))
    net.classifier.bias.assign(np.asarray([200.0] + [0.0] * 9, np.float32))
    compile_dgg(net)
    y = np.arange(200) % 10
    if prior == "code":
        with pytest.raises(TrainingError) as err:
            train_dgg(net, x, table, y, verbose=0)
        msg = str(err.value)
        assert "epoch 1, batch 1/10" in msg and "not finite: prior (the code prior" in msg
        assert "reconstruction" not in msg and "Q9" in msg
    else:
        history = train_dgg(net, x, table, y, verbose=0)
        assert np.isfinite(history[-1]["loss"]) and np.isfinite(history[-1]["prior"])
