"""Collapse warnings: fire on a constructed collapse (f2 sends everything to one
cluster), not on a healthy epoch; records keep the flag; the report lists the epochs."""
import numpy as np
import pytest

from dgg_tf import report
from dgg_tf.collapse import (classifier_acc, collapse_callback, collapse_epochs,
                             collapse_reasons)
from dgg_tf.config import DGGConfig
from dgg_tf.models import DGGNetwork

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


def _fire(net, x, record, reference):
    history = [dict(record)]
    cb = collapse_callback(history, x, TINY.n_clusters, reference)
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


def test_quiet_on_a_healthy_epoch(data, capsys):
    from dgg_tf.training import encode
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
    from dgg_tf.training import compile_dgg, train_dgg
    x, table = data
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

