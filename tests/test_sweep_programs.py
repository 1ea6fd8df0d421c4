"""A sweep's cells in programs (issue 27, items 3 and 5) on tiny blobs, on both backends:
one start per seed (computed once, equal to the stages of the cell alone), program mode
equal to one cell a process (per cell: losses, ACC per epoch, final ACC/NMI, weights,
to float32 rounding: |program - alone| <= 1e-5 * (1 + |alone|)), and a program stopped
after its first epoch resumes to the same result."""
import dataclasses
import os
import signal

import numpy as np
import pytest
from blob_inputs import blob_inputs

from dgg_tf.api import core, starts
from dgg_tf.core import stopping
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.inputs import check_run_inputs
from dgg_tf.core.rundir import RunDir
from dgg_tf.core.weight_files import load_weights_h5
from dgg_tf.numerics.weights import get_params
from dgg_tf.stages import initialise
from dgg_tf.sweep import programs
from dgg_tf.sweep.cells import cell_dir, prepare, read_json
from dgg_tf.sweep.protocols import sweep_configs
from dgg_tf.sweep.run import _cells, run_sweep

pytestmark = pytest.mark.backends

TOL = 1e-5
SETTINGS = {"input_dim": 64, "encoder_dims": [16, 16, 32], "classifier_epochs": 1,
            "kmeans_n_init": 1, "batch_size": 40}
PROTOCOL = {"name": "test", "subset": None, "epochs": 2, "precision": "float32", "seeds": 2,
            "flip_seeds": 1, "settings": SETTINGS}
NAMES = ["code"]


@pytest.fixture(scope="module", autouse=True)
def inputs(tmp_path_factory):
    """240 blobs with raw-kNN tables and an autoencoder file (``blob_inputs``); K-means
    single-threaded for the whole module (on tiny data far faster with busy cores)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        yield blob_inputs(tmp_path_factory.mktemp("programs_in"), 240, DGGConfig().replace(
            **{**SETTINGS, "encoder_dims": (16, 16, 32)}))


def _sweep(path, inputs):
    x, y, tables, weights = inputs
    prepare(str(path), PROTOCOL, sweep_configs(PROTOCOL, NAMES), x, y, tables, weights,
            {"source": "blobs"})
    return path


@pytest.fixture(scope="module")
def alone(inputs, tmp_path_factory):
    path = _sweep(tmp_path_factory.mktemp("alone") / "s", inputs)
    assert run_sweep(str(path), in_process=True, say=lambda m: None) == 0
    return path


@pytest.fixture(scope="module")
def together(inputs, tmp_path_factory):
    path = _sweep(tmp_path_factory.mktemp("together") / "s", inputs)
    assert run_sweep(str(path), in_process=True, say=lambda m: None, cells_per_program=2) == 0
    return path


def test_one_start_per_seed(inputs, monkeypatch):
    """Cells sharing a seed (DGG settings apart) share one start, computed once; K-means
    (seed-free: its own random state) runs once; the classifier's loss splits starts;
    each start is exactly what build_dgg + initial_stages give the cell alone."""
    x, y, tables, weights = inputs
    base = DGGConfig.preset("code").replace(**{**SETTINGS, "encoder_dims": (16, 16, 32)})
    configs = [base, base.replace(gmm_coefficient=1.0, prior="paper"), base.replace(seed=1),
               base.replace(classifier_pretrain_loss="cross_entropy")]
    calls = {"kmeans": 0, "classifier": 0}

    def counted(name, f):
        def wrapped(*a, **k):
            calls[name] += 1
            return f(*a, **k)
        return wrapped
    monkeypatch.setattr(starts, "kmeans_init", counted("kmeans", starts.kmeans_init))
    monkeypatch.setattr(initialise, "kmeans_init", counted("kmeans", initialise.kmeans_init))
    monkeypatch.setattr(core, "pretrain_classifier",
                        counted("classifier", core.pretrain_classifier))
    run_inputs = check_run_inputs(base, x, y, tables, weights, probe_steps=())
    found = starts.cell_starts(configs, run_inputs)
    assert calls == {"kmeans": 1, "classifier": 3}
    assert found[0] is found[1] and found[0] is not found[2]
    for config, (params, stages) in zip(configs, found):
        net = core.build_dgg(config, run_inputs.params, verbose=0)
        own = core.initial_stages(net, run_inputs, config, core.Options(verbose=0))
        for k, v in get_params(net).items():
            np.testing.assert_array_equal(params[k], v, err_msg=k)
        assert stages.summary() == own.summary()
        np.testing.assert_array_equal(stages.kmeans_labels, own.kmeans_labels)
    assert not np.array_equal(found[0][0]["classifier/W"], found[2][0]["classifier/W"])


def _close(a, b, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.all(np.abs(a - b) <= TOL * (1 + np.abs(b))), (what, np.max(np.abs(a - b)))


def _same_cells(got, want):
    """Every cell of sweep ``got`` equals its cell in ``want`` (see the module's tolerance)."""
    plan = read_json(f"{want}/plan.json")
    for name, seed in _cells(plan):
        g, w = RunDir(cell_dir(got, name, seed)), RunDir(cell_dir(want, name, seed))
        hg, hw = g.read_history(), w.read_history()
        assert [r["epoch"] for r in hg] == [r["epoch"] for r in hw] == [1, 2]
        for key in ("loss", "full_acc", "full_nmi", "lr"):
            _close([r[key] for r in hg], [r[key] for r in hw], (name, seed, key))
        rg, rw = g.read_record(), w.read_record()
        assert rg.is_finished(2) and rw.is_finished(2)
        _close([rg.final_acc, rg.final_nmi, rg.classifier_acc, rg.gmm_init_acc],
               [rw.final_acc, rw.final_nmi, rw.classifier_acc, rw.gmm_init_acc], name)
        np.testing.assert_array_equal(g.read_predictions(), w.read_predictions())
        pg, pw = load_weights_h5(g.model_h5)[0], load_weights_h5(w.model_h5)[0]
        for k in pw:
            _close(pg[k], pw[k], (name, seed, k))


def test_program_mode_equals_one_cell_a_process(alone, together):
    """Two seeds in one program: the same files per cell, the same numbers, the summary
    over them; one start per seed saved in SWEEP/starts."""
    _same_cells(together, alone)
    assert sorted(p.name[:7] for p in (together / "starts").iterdir()) == ["seed-0-", "seed-1-"]
    assert "| code | 2/2 |" in (together / "sweep.md").read_text()
    log = (together / "logs" / "code-seed-1.log").read_text()
    assert "in a program of 2 cells" in log and "epoch=2" in log


def test_stopped_program_resumes_to_the_same_result(inputs, together, tmp_path, monkeypatch):
    """A stop (Ctrl-C) asked during the first epoch, checkpoints every 5 epochs: the
    program saves the epoch it finished on the stop (the only save), history.csv has it;
    the same call again resumes every cell from that checkpoint to the same numbers,
    saving again only after the last epoch."""
    path = _sweep(tmp_path / "s", inputs)
    done, save = programs._epoch_done, programs.ResumableStage.save
    saved = []

    def stop_after(m, result, scorer):
        done(m, result, scorer)
        stopping.record(signal.SIGINT)

    def counted(stage, state):
        saved.append(state["epoch"])
        return save(stage, state)
    monkeypatch.setattr(programs, "_epoch_done", stop_after)
    monkeypatch.setattr(programs.ResumableStage, "save", counted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(str(path), in_process=True, say=lambda m: None, cells_per_program=2,
                  checkpoint_every=5)
    stopping.clear()
    monkeypatch.setattr(programs, "_epoch_done", done)
    # each cell once, on the stop; on TensorFlow the cells train one after the other, and
    # the stop comes after the first cell's first epoch, before the second starts
    first_saves = [1, 1] if os.environ.get("KERAS_BACKEND") == "jax" else [1]
    assert saved == first_saves
    first = RunDir(cell_dir(path, "code", 0))
    assert [r["epoch"] for r in first.read_history()] == [1]
    assert run_sweep(str(path), in_process=True, say=lambda m: None, cells_per_program=2,
                     checkpoint_every=5) == 0
    # then none for epoch 1 again: each cell after its last epoch, then the final files'
    assert saved == first_saves + [2] * 4
    assert "resumed after epoch 1" in (path / "logs" / "code-seed-0.log").read_text()
    _same_cells(path, together)


def test_program_units():
    cells = [("code", 0), ("paper", 0), ("code", 1), ("paper", 1), ("code", 2)]
    assert programs.program_units(cells, 2) == [
        (("code", 0), ("code", 1)), (("paper", 0), ("paper", 1)), (("code", 2),)]
    assert programs.unit_name((("code", 0), ("code", 1))) == "program-code-seeds-0-1"
    assert dataclasses.is_dataclass(programs._Cell)


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax", reason="cells train together on JAX")
def test_n_init_through_cells_equals_seed_after_seed(monkeypatch):
    """DGG(n_init=2) on JAX trains its seeds as cells of one program: the same losses (to
    the module's tolerance), ACCs, chosen seed (the lower final loss) and clusters as
    seed after seed, each of which is what n_init=1 gives (test_estimator.py's n_init
    test, there on TensorFlow)."""
    from sklearn.datasets import make_blobs

    from dgg_tf import DGG
    from dgg_tf.api import fitting
    x, y = make_blobs(150, 12, centers=3, random_state=0)
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
    settings = dict(n_clusters=3, epochs=1, pretrain_epochs=1, classifier_epochs=1, n_init=2,
                    config_overrides={"encoder_dims": (9, 8, 16), "latent_dim": 3,
                                      "pretrain_schedule": "dec"}, verbose=0)
    calls = []
    cells = fitting.fit_cells
    monkeypatch.setattr(fitting, "fit_cells", lambda *a, **k: calls.append(1) or cells(*a, **k))
    together = DGG(**settings).fit(x, y)
    monkeypatch.setattr(fitting, "fit_cells", lambda *a, **k: None)
    alone = DGG(**settings).fit(x, y)
    assert calls == [1]
    got, want = together.n_init_results_, alone.n_init_results_
    assert [r["random_state"] for r in got] == [r["random_state"] for r in want] == [0, 1]
    _close([r["loss"] for r in got], [r["loss"] for r in want], "loss")
    _close([r["acc"] for r in got], [r["acc"] for r in want], "acc")
    assert together.config_.seed == alone.config_.seed == int(np.argmin([r["loss"] for r in got]))
    assert together.history_[-1]["loss"] == min(r["loss"] for r in got)
    assert np.all(np.isfinite([r["loss"] for r in got])) and got[0]["loss"] != got[1]["loss"]
    assert all(0.0 <= r["acc"] <= 1.0 for r in got) and together.n_init == 2
    np.testing.assert_array_equal(together.labels_, alone.labels_)
    _close([r["loss"] for r in together.history_], [r["loss"] for r in alone.history_], "history")
