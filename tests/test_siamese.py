"""Siamese pairs, loss, training, neighbour tables and their files."""
import os

import numpy as np
import pytest

from dgg_tf.config import DGGConfig
from dgg_tf.graph import knn
from dgg_tf.siamese import (SiameseNet, TableError, embed, hinge_loss, load_checkpoint,
                            load_table, make_pairs, neighbor_purity, neighbor_table,
                            save_checkpoint, save_table, train_siamese)
from dgg_tf.weights import get_params, set_params

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
        save_checkpoint(tmp_path / "ck.h5", st, {"seed": 1})
        saved["epoch"] = st["epoch"]

    train_siamese(x, TINY, init_params=init, seed=1, epochs=2, verbose=0, on_epoch=on_epoch)
    assert saved["epoch"] == 2
    st, prov = load_checkpoint(tmp_path / "ck.h5")
    assert st["epoch"] == 2 and prov["seed"] == 1 and st["optimizer"]
    resumed, st3 = train_siamese(x, TINY, init_params=init, seed=1, epochs=3, verbose=0, state=st)
    for name in params:
        np.testing.assert_allclose(resumed[name], params[name], rtol=0, atol=1e-6)
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
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        train_siamese(x, TINY, init_params=bad, epochs=1, verbose=0)


# ---- neighbour tables ------------------------------------------------------------------
def test_neighbor_tables_random_and_nearest():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 4)).astype(np.float32)
    top = knn(emb, TINY.table_top)
    rand = neighbor_table(emb, TINY, seed=5)                   # config default: random_top100
    near = neighbor_table(emb, TINY, seed=5, mode="nearest")
    assert rand.shape == near.shape == (200, 1 + TINY.table_columns)
    assert rand.dtype == near.dtype == np.int32
    np.testing.assert_array_equal(near, top[:, :1 + TINY.table_columns])
    np.testing.assert_array_equal(rand[:, 0], np.arange(200))
    for i in range(200):
        row = rand[i, 1:]
        assert len(set(row.tolist())) == TINY.table_columns           # distinct
        assert set(row.tolist()) <= set(top[i, 1:].tolist())        # within the top 30
    # not simply the nearest, seeded, and reusing knn_indices gives the same table
    assert not np.array_equal(rand, near)
    np.testing.assert_array_equal(rand, neighbor_table(emb, TINY, seed=5, knn_indices=top))
    assert not np.array_equal(rand, neighbor_table(emb, TINY, seed=6, knn_indices=top))
    # the drawn positions cover the whole top 30, not only the first columns
    pos = np.array([[top[i].tolist().index(j) for j in rand[i, 1:]] for i in range(200)])
    assert pos.min() == 1 and pos.max() == TINY.table_top


def test_neighbor_purity():
    table = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0], [3, 2, 1]])
    labels = np.array([0, 0, 1, 1])
    assert neighbor_purity(table, labels, 1) == pytest.approx(1.0)
    assert neighbor_purity(table, labels, 2) == pytest.approx(0.5)
    assert neighbor_purity(np.array([[0, 1], [1, 0]]), np.array([4, 4]), 1) == 1.0
    with pytest.raises(ValueError, match="num_neighbors"):
        neighbor_purity(table, labels, 3)


def test_table_round_trip_and_rejections(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 3))
    table = neighbor_table(emb, TINY, seed=1)
    path = tmp_path / "t.npz"
    save_table(path, table, neighbor_selection="random_top100", seed=1,
               purity={"nearest": np.float64(0.9)}, provenance={"command": "x"})
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p]
    got, settings = load_table(path, n_samples=50)
    np.testing.assert_array_equal(got, table)
    assert got.dtype == np.int32
    assert settings["seed"] == 1 and settings["purity"]["nearest"] == 0.9
    assert settings["n_samples"] == 50 and settings["columns"] == 1 + TINY.table_columns

    with pytest.raises(TableError, match="50 rows but the data has 60"):
        load_table(path, n_samples=60)
    with pytest.raises(TableError, match="does not exist"):
        load_table(tmp_path / "missing.npz")

    def bad(arr, match):
        p = tmp_path / "bad.npz"
        np.savez(p, table=arr)
        with pytest.raises(TableError, match=match):
            load_table(p)
    bad(table.astype(np.float32), "dtype")
    bad(table[:, :1], "shape")
    bad(table[:, 0], "shape")
    t = table.copy()
    t[3, 4] = 50
    bad(t, r"\[0, 50\)")
    t = table.copy()
    t[3, 4] = -1
    bad(t, r"\[0, 50\)")
    t = table.copy()
    t[[3, 4], 0] = t[[4, 3], 0]
    bad(t, r"column 0 .*\(row 3 holds 4\)")
    np.savez(tmp_path / "other.npz", foo=table)
    with pytest.raises(TableError, match="no 'table'"):
        load_table(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TableError, match="cannot read"):
        load_table(tmp_path / "junk.npz")
    with pytest.raises(TableError, match="column 0"):
        save_table(tmp_path / "no.npz", table[:, ::-1])


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
