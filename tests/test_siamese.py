"""Siamese pairs, loss, training (through fit, exact resume), the whole job
(build_neighbors) and the tables of a subset (subset_neighbors); the table format
itself is tested in test_tables.py."""
import os

import keras
import numpy as np
import pytest

from dgg_tf.core.config import DGGConfig
from dgg_tf.core.tables import load_table, neighbor_purity, table_paths
from dgg_tf.core.weight_files import load_weights_h5
from dgg_tf.numerics.knn import knn, neighbor_table
from dgg_tf.numerics.weights import get_params, save_weights_h5, set_params
from dgg_tf.stages.siamese import (SiameseNet, build_neighbors, embed, hinge_loss, make_pairs,
                                   subset_neighbors, train_siamese)
from dgg_tf.train.callbacks import EpochEnd, TrainingError
from dgg_tf.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "pretrained", "mnist_siamese.h5")
MNIST_DIR = "/work/shared/data/mnist"

TINY = DGGConfig(input_dim=64, encoder_dims=(16, 16, 32), latent_dim=4, siamese_batch_size=100,
                 table_top=30, table_columns=12, num_neighbors=5)


def blobs(n=400, dim=64, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.random((k, dim))
    labels = rng.integers(0, k, n)
    x = centres[labels] + 0.15 * rng.normal(size=(n, dim))
    return np.clip(x, 0, 1).astype(np.float32), labels


# ---- pairs ------------------------------------------------------------------------
def test_make_pairs_positives_are_true_2nn():
    x, _ = blobs(120)
    first, second, label = make_pairs(x, seed=3)
    n = len(x)
    assert len(first) == len(second) == len(label) == 4 * n
    np.testing.assert_array_equal(first, np.tile(np.arange(n), 4))
    d = ((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    np.testing.assert_array_equal(second[:n], order[:, 0])
    np.testing.assert_array_equal(second[n:2 * n], order[:, 1])
    np.testing.assert_array_equal(label, np.r_[np.ones(2 * n), np.zeros(2 * n)])
    assert label.dtype == np.float32
    # negatives: two permutations of all indices, from a seeded numpy Generator
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(second[2 * n:3 * n], rng.permutation(n))
    np.testing.assert_array_equal(second[3 * n:], rng.permutation(n))


def test_make_pairs_seeded_and_from_knn():
    x, _ = blobs(80)
    a = make_pairs(x, seed=7)
    b = make_pairs(x, seed=7)
    c = make_pairs(x, seed=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[1][160:], c[1][160:])
    np.testing.assert_array_equal(a[1][:160], c[1][:160])     # positives do not depend on seed
    d = make_pairs(seed=7, knn_indices=knn(x, 5))              # wider table: columns 1, 2 used
    for u, v in zip(a, d):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="column 0"):
        make_pairs(seed=0, knn_indices=knn(x, 2)[:, ::-1])


# ---- loss ---------------------------------------------------------------------------
def test_hinge_loss_matches_numpy():
    rng = np.random.default_rng(0)
    e1, e2 = rng.normal(size=(2, 50, 4)).astype(np.float32)
    e2[:10] = e1[:10] + 0.01                     # some negatives with d < margin
    lab = (rng.random(50) < 0.5).astype(np.float32)
    y = 2 * lab - 1
    d = ((e1.astype(np.float64) - e2) ** 2).sum(1)
    for margin in (3.0, 0.5):
        ref = np.maximum(0.0, margin + y * d).sum() / 50
        got = float(hinge_loss(e1, e2, lab, margin))
        np.testing.assert_allclose(got, ref, rtol=1e-5)
    # a positive pair always costs margin + d; a far negative costs nothing
    assert float(hinge_loss(e1[:1], e1[:1], np.ones(1, np.float32))) == pytest.approx(3.0)
    assert float(hinge_loss(e1[:1], e1[:1] + 10, np.zeros(1, np.float32))) == 0.0


# ---- network and training --------------------------------------------------------------
def test_siamese_net_params_are_encoder_layers():
    net = SiameseNet(TINY)
    assert sorted(get_params(net)) == sorted(f"encoder{i}/{w}" for i in range(1, 5) for w in "Wb")
    assert get_params(net)["encoder1/W"].shape == (64, 16)
    assert embed(net, np.zeros((7, 64), np.float32)).shape == (7, 4)


def test_train_siamese_lowers_loss_and_resumes_exactly(tmp_path):
    x, _ = blobs(300)
    init = get_params(SiameseNet(TINY))
    params, state = train_siamese(x, TINY, init_params=init, seed=1, epochs=3, verbose=0)
    losses = [h["loss"] for h in state["history"]]
    assert losses[-1] < losses[0]
    assert state["epoch"] == 3 and [h["lr"] for h in state["history"]] == [1e-3] * 3
    # 2 epochs, checkpoint to a file, then resume to 3: same weights as straight through
    saved = {}

    def on_epoch(st, net):
        save_checkpoint(tmp_path / "ck.npz", "siamese", st, {"seed": 1})
        saved["epoch"] = st["epoch"]

    train_siamese(x, TINY, init_params=init, seed=1, epochs=2, verbose=0, on_epoch=on_epoch)
    assert saved["epoch"] == 2
    st, prov = load_checkpoint(tmp_path / "ck.npz", "siamese")
    assert st["epoch"] == 2 and prov["seed"] == 1 and st["optimizer"]
    resumed, st3 = train_siamese(x, TINY, init_params=init, seed=1, epochs=3, verbose=0, state=st)
    for name in params:
        np.testing.assert_array_equal(resumed[name], params[name], err_msg=name)
    assert [h["loss"] for h in st3["history"]] == pytest.approx(losses)


def test_train_siamese_errors():
    x, _ = blobs(120)
    with pytest.raises(ValueError, match="encoder1/W"):
        train_siamese(x, TINY, init_params={"encoder2/W": np.zeros((16, 16), np.float32)},
                      epochs=1, verbose=0)
    with pytest.raises(ValueError, match="shape"):
        train_siamese(x[:, :10], TINY, epochs=1, verbose=0)
    bad = get_params(SiameseNet(TINY))
    bad["encoder4/W"] = bad["encoder4/W"] * 1e30      # huge weights: the loss overflows
    with pytest.raises(TrainingError, match="epoch 1, batch 1"):
        train_siamese(x, TINY, init_params=bad, epochs=1, verbose=0)


def test_siamese_end_to_end_purity_improves():
    """A few epochs on separable blobs: the embedding's neighbours get purer than
    random and K-means-free purity of the nearest table is high."""
    x, labels = blobs(300, seed=3)
    cfg = TINY.replace(siamese_batch_size=60)
    params, _ = train_siamese(x, cfg, seed=0, epochs=4, verbose=0)
    net = SiameseNet(cfg)
    set_params(net, params)
    emb = embed(net, x)
    near = neighbor_table(emb, cfg, mode="nearest")
    assert neighbor_purity(near, labels, cfg.num_neighbors) > 0.8


def test_train_siamese_mixed_bfloat16():
    x, _ = blobs(200)
    cfg = TINY.replace(precision="mixed_bfloat16")
    params, state = train_siamese(x, cfg, seed=0, epochs=2, verbose=0)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in params.values())
    assert state["history"][-1]["loss"] < state["history"][0]["loss"]
    net = SiameseNet(cfg)
    set_params(net, params)
    assert embed(net, x).dtype == np.float32


def test_train_siamese_step_lr_schedule():
    x, _ = blobs(100)
    for mode, expected in (("code", [1e-3, 1e-4, 1e-4]), ("nominal", [1e-3, 1e-3, 1e-4])):
        cfg = TINY.replace(siamese_lr_step=2, lr_schedule=mode)
        _, state = train_siamese(x, cfg, seed=0, epochs=3, verbose=0)
        assert [h["lr"] for h in state["history"]] == pytest.approx(expected)


class EpochRecorder(keras.callbacks.Callback):
    """A user's Keras callback: records the epochs and losses fit reports."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append((epoch, float(logs["loss"])))


def test_train_siamese_goes_through_fit_with_user_callbacks():
    x, _ = blobs(120)
    recorder = EpochRecorder()
    _, state = train_siamese(x, TINY, seed=0, epochs=3, verbose=0, callbacks=[recorder])
    assert [e for e, _ in recorder.ends] == [0, 1, 2]
    assert [loss for _, loss in recorder.ends] == [h["loss"] for h in state["history"]]
    # resumed at epoch 2: fit starts at initial_epoch 2
    recorder2 = EpochRecorder()
    train_siamese(x, TINY, seed=0, epochs=3, verbose=0, callbacks=[recorder2],
                  state={k: state[k] for k in state} | {"epoch": 2})
    assert [e for e, _ in recorder2.ends] == [2]


# ---- build_neighbors: training, checkpoint, tables, files -----------------------------
def test_build_neighbors_writes_everything_and_resumes_exactly(tmp_path):
    x, labels = blobs(150)
    cfg = TINY.replace(siamese_epochs=3)
    out_w, out_t = tmp_path / "s.h5", tmp_path / "nb.npz"
    params, metrics = build_neighbors(cfg, x, weights=None, out_weights=out_w, out_table=out_t,
                                      labels=labels, seed=4, verbose=0,
                                      provenance={"command": "test"})
    got, prov = load_weights_h5(out_w)
    for name in params:
        np.testing.assert_array_equal(got[name], params[name])
    assert prov["command"] == "test" and prov["epochs_run"] == 3 and prov["init_weights"] == "none"
    paths = table_paths(out_t)
    assert paths == {"random_top100": str(out_t), "nearest": str(tmp_path / "nb_nearest.npz")}
    for mode, path in paths.items():
        table, settings = load_table(path, n_samples=150)
        assert table.shape == (150, 1 + cfg.table_columns)
        assert settings["neighbor_selection"] == mode and settings["seed"] == 4
        assert settings["purity"][mode] == pytest.approx(
            neighbor_purity(table, labels, cfg.num_neighbors))
    assert 0 <= metrics["kmeans_acc"] <= 1 and "purity_nearest" in metrics
    with pytest.raises(ValueError, match="exists; remove it or pass --resume"):
        build_neighbors(cfg, x, weights=None, out_weights=out_w, out_table=out_t, verbose=0)

    # killed after epoch 2, resumed from the checkpoint: the same weights
    out_w2 = tmp_path / "s2.h5"

    def stop_after_two(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        build_neighbors(cfg, x, weights=None, out_weights=out_w2, out_table=tmp_path / "t2.npz",
                        seed=4, verbose=0, callbacks=[EpochEnd(stop_after_two)])
    assert load_checkpoint(checkpoint_path(out_w2), "siamese")[0]["epoch"] == 2
    assert os.path.exists(str(out_w2) + ".pairs.npz")
    with pytest.raises(ValueError, match="data_fingerprint"):
        build_neighbors(cfg, x[::-1], weights=None, out_weights=out_w2,
                        out_table=tmp_path / "t2.npz", seed=4, resume=True, verbose=0)
    resumed, _ = build_neighbors(cfg, x, weights=None, out_weights=out_w2,
                                 out_table=tmp_path / "t2.npz", seed=4, resume=True, verbose=0)
    for name in params:
        np.testing.assert_array_equal(resumed[name], params[name], err_msg=name)


def test_build_neighbors_user_errors_before_work(tmp_path):
    x, _ = blobs(150)
    common = dict(out_weights=tmp_path / "s.h5", out_table=tmp_path / "t.npz", verbose=0)
    with pytest.raises(ValueError, match="do not exist"):
        build_neighbors(TINY, x, weights=tmp_path / "missing.h5", **common)
    ae = tmp_path / "ae.h5"
    save_weights_h5(ae, {"encoder1/W": np.zeros((64, 16), np.float32)})
    with pytest.raises(ValueError, match="missing encoder1/b"):
        build_neighbors(TINY, x, weights=ae, **common)
    with pytest.raises(ValueError, match="at least 31"):
        build_neighbors(TINY, x[:30], weights=None, **common)
    with pytest.raises(ValueError, match="non-negative"):
        build_neighbors(TINY, x, weights=None, epochs=-1, **common)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a writable directory"):
        build_neighbors(TINY, x, weights=None, out_weights=tmp_path / "file" / "s.h5",
                        out_table=tmp_path / "t.npz", verbose=0)
    assert not os.path.exists(tmp_path / "s.h5.pairs.npz")   # nothing was computed


# ---- subset_neighbors: the shipped Siamese net, tables inside a subset ------------------
def numpy_embedding(path, x):
    """The Siamese encoder's forward pass in float64 NumPy, straight from the file."""
    import h5py
    with h5py.File(path, "r") as f:
        h = x.astype(np.float64)
        for i in range(1, 5):
            h = h @ f[f"encoder{i}/W"][()] + f[f"encoder{i}/b"][()]
            h = np.maximum(h, 0) if i < 4 else h
    return h


def check_subset_table(table, info, x, config):
    n = len(x)
    assert table.shape == (n, 1 + config.table_columns) and table.dtype == np.int32
    np.testing.assert_array_equal(table[:, 0], np.arange(n))
    # the embedding the table was built from, checked against NumPy's forward pass
    net = SiameseNet(config)
    set_params(net, load_weights_h5(SHIPPED)[0], partial=True)
    z = embed(net, x).astype(np.float64)
    np.testing.assert_allclose(z, numpy_embedding(SHIPPED, x), rtol=1e-4, atol=1e-4)
    d = ((z[:, None, :] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    top = np.argsort(d, axis=1, kind="stable")[:, :config.table_top]
    for i in range(n):
        row = table[i, 1:].tolist()
        assert i not in row and len(set(row)) == len(row)
        assert set(row) <= set(top[i].tolist()), i
    assert info["neighbor_selection"] == config.neighbor_selection
    np.testing.assert_array_equal(info["tables"][config.neighbor_selection], table)


@pytest.mark.parametrize("mode", ["random_top100", "nearest"])
def test_subset_neighbors_on_synthetic_rows(mode):
    x, labels = blobs(400, dim=784, k=10)
    config = DGGConfig(neighbor_selection=mode)
    table, info = subset_neighbors(x, SHIPPED, config, seed=3, labels=labels)
    check_subset_table(table, info, x, config)
    assert info["neighbor_purity"] == pytest.approx(
        neighbor_purity(table, labels, config.num_neighbors))
    if mode == "nearest":
        np.testing.assert_array_equal(table, knn(embed_shipped(x), 100)[:, :41])
    again, _ = subset_neighbors(x, SHIPPED, config, seed=3)
    np.testing.assert_array_equal(again, table)


def embed_shipped(x):
    net = SiameseNet(DGGConfig())
    set_params(net, load_weights_h5(SHIPPED)[0], partial=True)
    return embed(net, x)


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="no local MNIST")
def test_subset_neighbors_on_first_500_mnist_images():
    from dgg_tf.core.data import load_mnist
    x, y = load_mnist(MNIST_DIR)
    x, y = x[:500], y[:500]
    config = DGGConfig()
    table, info = subset_neighbors(x, SHIPPED, config, seed=0, labels=y)
    check_subset_table(table, info, x, config)
    # the trained embedding groups digits: 88% of the 20 nearest share the label (raw
    # pixels: 66%); 40 drawn from the top 100 of ~50 per class can reach only about half
    assert info["purity"]["nearest"] > 0.8
    assert 0.3 < info["neighbor_purity"] == info["purity"]["random_top100"] < 0.5


def test_subset_neighbors_rejects_small_subsets_and_unfit_weights(tmp_path):
    x, _ = blobs(101, dim=784)
    with pytest.raises(ValueError, match="100 samples; a neighbour table needs more than "
                                         "table_top = 100"):
        subset_neighbors(x[:100], SHIPPED, DGGConfig())
    table, _ = subset_neighbors(x, SHIPPED, DGGConfig())      # 101: the smallest that works
    assert table.shape == (101, 41)
    with pytest.raises(ValueError, match="shape"):
        subset_neighbors(x[:, :64], SHIPPED, DGGConfig())
    with pytest.raises(ValueError, match="encoder1/W has shape"):
        subset_neighbors(blobs(50)[0], SHIPPED, TINY)
    with pytest.raises(ValueError, match="do not exist"):
        subset_neighbors(x, tmp_path / "missing.h5", DGGConfig())
    partial = tmp_path / "partial.h5"
    params = load_weights_h5(SHIPPED)[0]
    save_weights_h5(partial, {k: v for k, v in params.items() if not k.startswith("encoder4")})
    with pytest.raises(ValueError, match="lack .*encoder4/W"):
        subset_neighbors(x, partial, DGGConfig())
