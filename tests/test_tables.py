"""dgg_tf.tables: the neighbour table's format, files, names, checks (the width rule
among them, in one place), purity and the one builder; and that it needs no TensorFlow."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from dgg_tf.core import tables as tables_module
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.tables import (TableError, as_tables, check_table, check_table_size, load_table,
                                load_tables, neighbor_purity, save_table, sibling_path,
                                table_paths)
from dgg_tf.numerics.knn import knn, neighbor_table, tables_of_embedding
from dgg_tf.stages.neighbors import rebuild_raw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = DGGConfig(input_dim=64, encoder_dims=(16, 16, 32), latent_dim=4, siamese_batch_size=100,
                 table_top=30, table_columns=12, num_neighbors=5)


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
    with pytest.raises(TableError, match="not an .npz archive") as err:
        load_table(tmp_path / "junk.npz")
    assert "allow_pickle" not in str(err.value)      # NumPy's hint would mislead
    with pytest.raises(TableError, match="cannot read"):
        load_table(tmp_path / "junk.npz")
    with pytest.raises(TableError, match="column 0"):
        save_table(tmp_path / "no.npz", table[:, ::-1])


# ---- the module stands alone ------------------------------------------------------------
def test_tables_import_and_files_without_tensorflow(tmp_path):
    """Reading, writing, checking and scoring tables imports no TensorFlow or Keras."""
    code = f"""
import sys
import numpy as np
from dgg_tf.tables import check_table, load_table, neighbor_purity, save_table, table_paths
table = np.stack([np.arange(6), (np.arange(6) + 1) % 6], axis=1)
save_table({str(tmp_path / 't.npz')!r}, table, seed=0)
got, _ = load_table({str(tmp_path / 't.npz')!r}, n_samples=6, num_neighbors=1)
check_table(got, "t", 6, 1)
neighbor_purity(got, np.zeros(6, int), 1)
table_paths("x.npz")
heavy = [m for m in ("tensorflow", "keras") if m in sys.modules]
assert not heavy, heavy
"""
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


# ---- the width rule: one check, every entry -------------------------------------------
def _narrow(n=600, columns=5):
    return np.tile(np.arange(n)[:, None], (1, columns))


def test_width_rule_is_the_one_check_from_files_arrays_and_the_estimator(tmp_path, monkeypatch):
    """A table narrower than num_neighbors + 1 is refused by ``tables.check_width`` with
    the same message, whether it comes from a file, as arrays (run_dgg's entry) or to
    ``DGG.fit``."""
    calls = []
    real = tables_module.check_width

    def spy(table, source, num_neighbors):
        calls.append(source)
        return real(table, source, num_neighbors)
    monkeypatch.setattr(tables_module, "check_width", spy)
    config = DGGConfig(input_dim=4)                       # num_neighbors = 20
    message = "has 5 columns; num_neighbors=20 needs 21"
    path = tmp_path / "narrow.npz"
    save_table(path, _narrow())
    with pytest.raises(TableError, match=message):
        load_table(path, n_samples=600, num_neighbors=20)
    with pytest.raises(TableError, match=re.escape(f"neighbour table {path} {message}")):
        load_tables(str(path), 600, config)
    with pytest.raises(TableError, match=r"neighbour table neighbors\['random_top100'\] " + message):
        as_tables(_narrow(), 600, config)
    from dgg_tf import DGG
    x = np.linspace(0, 1, 600 * 4, dtype=np.float32).reshape(600, 4)
    with pytest.raises(TableError, match=f"neighbour table neighbors {message}"):
        DGG(n_clusters=2, epochs=1, verbose=0).fit(x, neighbors=_narrow())
    assert calls == [str(path), str(path), "neighbors['random_top100']", "neighbors"]
    # wide enough passes the same check
    assert check_table(_narrow(columns=21), "ok", 600, 20).shape == (600, 21)


def test_width_rule_from_the_pipeline_entry(tmp_path):
    """``core.inputs.check_run_inputs`` (run_dgg's checks before any work) refuses it too."""
    from dgg_tf.core.inputs import check_run_inputs as prepare_inputs
    config = DGGConfig(input_dim=4)
    x = np.linspace(0, 1, 600 * 4, dtype=np.float32).reshape(600, 4)
    with pytest.raises(TableError, match="has 5 columns; num_neighbors=20 needs 21"):
        prepare_inputs(config, x, None, _narrow(), weights={})


# ---- names, size and the one builder -----------------------------------------------------
def test_table_paths_and_sibling_agree():
    paths = table_paths("out/mnist_neighbors.npz")
    assert paths == {"random_top100": "out/mnist_neighbors.npz",
                     "nearest": "out/mnist_neighbors_nearest.npz"}
    assert sibling_path(paths["random_top100"], "random_top100") == paths["nearest"]
    assert sibling_path(paths["nearest"], "nearest") == paths["random_top100"]
    assert sibling_path("x.npz", "nearest") is None
    assert table_paths("t")["nearest"] == "t_nearest.npz"


def test_check_table_size():
    check_table_size(31, TINY, "here")
    with pytest.raises(ValueError, match="here: 30 samples; a neighbour table needs more than "
                                         r"table_top = 30 \(at least 31\); hint"):
        check_table_size(30, TINY, "here", "; hint")
    with pytest.raises(ValueError, match="rebuilding neighbours: 30 samples"):
        rebuild_raw(np.random.default_rng(0).random((30, 3)), TINY)


def test_one_builder_serves_rebuild_raw():
    rng = np.random.default_rng(1)
    x = rng.random((120, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 120)
    cfg = TINY.replace(seed=4)
    tables, purity, seconds = tables_of_embedding(x, cfg, seed=4, labels=labels)
    top = knn(x, cfg.table_top)
    assert set(tables) == {"random_top100", "nearest"} and seconds >= 0
    for mode, table in tables.items():
        np.testing.assert_array_equal(table, neighbor_table(None, cfg, 4, knn_indices=top,
                                                            mode=mode))
        assert purity[mode] == neighbor_purity(table, labels, cfg.num_neighbors)
    raw, info = rebuild_raw(x, cfg)
    assert info["source"] == "raw_knn"
    for mode in tables:
        np.testing.assert_array_equal(raw[mode], tables[mode])
