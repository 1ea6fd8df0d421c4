"""reproduce/sweep.py's library (dgg_tf.sweep) on tiny synthetic data: the declared
sweep.json shape, skipping finished cells, resuming a killed cell, the summary, and
the report's "Effect on the final result"."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from blob_inputs import blob_inputs

from dgg_tf import report
from dgg_tf.cli import report as report_cli
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.rundir import RunDir
from dgg_tf.sweep import curves as sweep_curves
from dgg_tf.sweep.cells import cell_config, cell_dir, cell_state, prepare, read_json
from dgg_tf.sweep.protocols import DIAGNOSTIC_GRID, sweep_configs, with_best
from dgg_tf.sweep.results import (effects, infer_baselines, load_effects, paired_difference,
                                  protocol_line)
from dgg_tf.sweep.run import _cells, run_sweep
from dgg_tf.sweep.summary import write_summary

SETTINGS = {"input_dim": 64, "encoder_dims": [16, 16, 32], "classifier_epochs": 1,
            "kmeans_n_init": 1, "batch_size": 40}
PROTOCOL = {"name": "test", "subset": None, "epochs": 1, "precision": "float32", "seeds": 2,
            "flip_seeds": 2, "settings": SETTINGS}
NAMES = ["code", "gmm_coefficient=1.0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_kmeans():
    """K-means on tiny data is far slower with busy cores than single-threaded."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """240 blobs in [0, 1]^64 with labels, raw-kNN tables and a tiny autoencoder file."""
    cfg = DGGConfig().replace(**{**SETTINGS, "encoder_dims": (16, 16, 32)})
    return blob_inputs(tmp_path_factory.mktemp("sweep_in"), 240, cfg)


def _prepare(path, inputs, protocol=PROTOCOL, names=NAMES):
    x, y, tables, weights = inputs
    return prepare(str(path), protocol, sweep_configs(protocol, names), x, y, tables, weights,
                   {"source": "blobs"})


@pytest.fixture(scope="module")
def swept(inputs, tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "s"
    _prepare(path, inputs)
    lines = []
    assert run_sweep(str(path), in_process=True, say=lines.append) == 0
    return path, lines


def test_writes_the_declared_shape(swept):
    path, lines = swept
    sweep = read_json(path / "sweep.json")
    assert set(sweep) == {"protocol", "configs"} and list(sweep["configs"]) == NAMES
    assert sweep["protocol"]["epochs"] == 1 and sweep["protocol"]["data"]["n_samples"] == 240
    for name, entry in sweep["configs"].items():
        assert set(entry) == {"overrides", "seeds", "epochs", "classifier_acc", "full_acc",
                              "full_nmi", "curves", "gmm_acc", "slope_last_20"}
        # one epoch: each cell's curve is its final ACC; too short for a slope
        assert [c[-1] for c in entry["curves"].values()] == entry["full_acc"]
        assert entry["slope_last_20"] is None and all(0 < v <= 1 for v in entry["gmm_acc"])
        assert entry["seeds"] == [0, 1] and entry["epochs"] == 1
        for key in ("classifier_acc", "full_acc", "full_nmi"):
            assert len(entry[key]) == 2 and all(0 <= v <= 1 for v in entry[key])
    assert sweep["configs"]["gmm_coefficient=1.0"]["overrides"] == {"gmm_coefficient": 1.0}
    assert len([ln for ln in lines if ln.startswith("[")]) == 4 and "sweep ETA" in lines[-1]
    md = (path / "sweep.md").read_text()
    assert "| code | 2/2 |" in md and "gmm_coefficient=1.0 (vs code): ACC" in md
    assert (path / "sweep.png").stat().st_size > 1000
    run = read_json(path / "runs" / "code" / "seed-0" / "config.json")
    assert "audit_seconds" not in run and run["config"]["seed"] == 0


def test_rerun_skips_finished_cells(swept):
    path, _ = swept
    stamp = os.path.getmtime(path / "runs" / "code" / "seed-1" / "config.json")
    lines = []
    assert run_sweep(str(path), in_process=True, say=lines.append) == 0
    assert lines == [f"sweep {path}: 4 cells, 4 finished, 0 to run (in this process)"]
    assert os.path.getmtime(path / "runs" / "code" / "seed-1" / "config.json") == stamp


def test_resumes_a_killed_cell(inputs, tmp_path):
    """A cell killed after its epoch-1 checkpoint of 2 is resumed (as a subprocess)."""
    from dgg_tf.api.pipeline import run_dgg
    x, y, tables, weights = inputs
    protocol = {**PROTOCOL, "epochs": 2, "seeds": 1}
    plan = _prepare(tmp_path, inputs, protocol, ["code"])
    cell = cell_dir(str(tmp_path), "code", 0)
    config = cell_config(plan, "code", 0)
    first = run_dgg(config.replace(epochs=1), x, y, neighbors=tables, weights=str(weights),
                    workdir=cell, audit=False, verbose=0)["history"]
    os.remove(os.path.join(cell, "model.h5"))          # as if killed before finishing
    assert cell_state(cell, 2) == "resume"
    lines = []
    assert run_sweep(str(tmp_path), jobs=1, say=lines.append) == 0, \
        (tmp_path / "logs" / "code-seed-0.log").read_text()
    info = read_json(os.path.join(cell, "config.json"))
    assert info["finished"]["epochs"] == 2 and info["resumed"][0]["from_epoch"] == 1
    hist = RunDir(cell).read_history()
    assert hist[0]["full_acc"] == first[0]["full_acc"] and len(hist) == 2
    assert read_json(tmp_path / "sweep.json")["configs"]["code"]["full_acc"][0] is not None


def test_paired_bootstrap_and_ranking():
    base = {"seeds": [0, 1, 2], "full_acc": [0.5, 0.6, 0.7], "full_nmi": [0.5, 0.5, 0.5]}
    up = {"seeds": [0, 1, 2], "full_acc": [0.7, 0.8, 0.9], "full_nmi": [0.5, 0.5, None]}
    d = paired_difference(up, base, "full_acc")
    assert d["difference"] == pytest.approx(0.2) and d["low"] == pytest.approx(0.2)
    assert paired_difference(up, base, "full_nmi")["n"] == 2
    sweep = {"configs": {"code": {**base, "overrides": {}},
                         "a": {**up, "overrides": {"prior": "paper"}},
                         "b": {**base, "overrides": {"lr_schedule": "nominal"}}}}
    ranked = effects(sweep)
    assert list(ranked) == ["a", "b"] and ranked["a"]["moves"] and not ranked["b"]["moves"]


def test_report_effect_on_the_final_result(swept, tmp_path):
    path, _ = swept
    write_summary(str(path))
    found, ranked = load_effects(str(path))
    rep = report.build_report(None, [], sweep=(str(path), protocol_line(found["protocol"]),
                                               ranked))
    effect = rep["Q10"]["effect_on_final_result"]
    assert effect["configuration"] == "gmm_coefficient=1.0" and effect["seeds"] == 2
    assert "protocol test" in effect["protocol"]
    md = report.render_markdown(rep)
    assert md.index("## Effect on the final result") < md.index("## Q1:")
    assert "gmm_coefficient=1.0 (Q10)" in md
    assert report_cli.main(["--sweep", str(path), "--out", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["sweep"]["dir"]


def test_script_plan_and_usage_errors(capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "sweep_script", os.path.join(os.path.dirname(__file__), "..", "reproduce", "sweep.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--protocol", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "10 configurations, 34 cells, 10000 images, 15 epochs, mixed_bfloat16" in out
    for bad in (["--protocol", "cpu", "--jobs", "0"], ["--dry-run"]):
        with pytest.raises(SystemExit) as exited:                 # the parser's refusal
            script.main(bad)
        assert exited.value.code == 2
    assert script.main(["--protocol", "cpu", "--set", "gmm_coefficient=3", "--dry-run"]) == 2
    assert script.main(["--protocol", "cpu", "--configs", "code,nope", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 4 and "unknown configuration(s) nope" in err
    assert "--jobs: must be at least 1, got 0" in err and "--protocol is required" in err


def test_baselines_inferred_from_sweep_json_alone():
    """Committed results keep sweep.json, not plan.json: a flip on top of another flip is
    compared with that flip, everything else with code."""
    sweep = {"configs": {
        "code": {"overrides": {}}, "paper": {"overrides": {"prior": "paper", "similarity": "gauss",
                                                          "sigma_mode": "honoured"}},
        "similarity=gauss": {"overrides": {"similarity": "gauss"}},
        "sigma_mode=honoured": {"overrides": {"similarity": "gauss", "sigma_mode": "honoured"}},
        "prior=paper": {"overrides": {"prior": "paper"}}}}
    assert infer_baselines(sweep) == {"paper": "code", "similarity=gauss": "code",
                                      "sigma_mode=honoured": "similarity=gauss",
                                      "prior=paper": "code"}


def test_tiny_converge_sweep_writes_curves_and_slopes(inputs, tmp_path):
    """The diagnostic grid on the blobs for 3 epochs: sweep.json holds per-epoch curves
    equal to each cell's history.csv, the GMM init's ACC, the end slope (a least-squares
    line over the last epochs, by hand), and sweep-curves.png is written."""
    import csv

    protocol = {**PROTOCOL, "epochs": 3, "seeds": 1, "flip_seeds": 1, "grid": "diagnostic"}
    configs = sweep_configs(protocol, ["code", "code+warmup"])
    assert configs["code+warmup"]["overrides"] == DIAGNOSTIC_GRID["code+warmup"][0]
    extra = with_best(protocol, "code+cross_entropy+warmup")
    assert extra["paper+cross_entropy+warmup"]["overrides"]["prior"] == "paper"
    assert extra["code+cross_entropy+warmup+nearest"]["overrides"]["neighbor_selection"] \
        == "nearest"
    x, y, tables, weights = inputs
    path = tmp_path / "s"
    prepare(str(path), protocol, configs, x, y, tables, weights, {"source": "blobs"})
    assert run_sweep(str(path), in_process=True, say=lambda s: None) == 0
    sweep = read_json(path / "sweep.json")
    assert (path / "sweep-curves.png").stat().st_size > 1000
    for name, entry in sweep["configs"].items():
        with open(os.path.join(cell_dir(str(path), name, 0), "history.csv")) as f:
            want = [float(r["full_acc"]) for r in csv.DictReader(f)]
        assert entry["curves"] == {"0": want} and len(want) == 3
        info = read_json(os.path.join(cell_dir(str(path), name, 0), "config.json"))
        assert entry["gmm_acc"] == [info["gmm_init"]["gmm_no_pi_acc"]]
    curve = [0.1, 0.3, 0.2, 0.6]
    slope = sweep_curves.end_slope([curve, [0.3, 0.1, 0.4, 0.2]], epochs=3)
    mean = np.array([0.2, 0.3, 0.4])        # the two seeds' mean over the last 3 epochs
    assert slope == pytest.approx(10 * np.polyfit([0, 1, 2], mean, 1)[0]) == pytest.approx(1.0)
    assert sweep_curves.end_slope([curve], epochs=5) is None
    assert "How flat the curves end" in (path / "sweep.md").read_text()


def test_cells_run_seed_by_seed():
    plan = {"configs": {"a": {"seeds": [0, 1, 2]}, "b": {"seeds": [0, 1]}}}
    assert _cells(plan) == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]


def test_extend_refuses_another_backend(tmp_path):
    """A sweep planned on TensorFlow (or before the backend was recorded) is not
    continued on JAX: the protocol differs in its backend."""
    from dgg_tf.sweep.cells import extend
    x = np.random.default_rng(0).random((30, 4)).astype(np.float32)
    tables = {"random_top100": np.tile(np.arange(30)[:, None], (1, 4))}
    configs = sweep_configs(PROTOCOL, ["code"])
    prepare(str(tmp_path), PROTOCOL, configs, x, None, tables, tmp_path / "w.h5")
    assert extend(str(tmp_path), {**PROTOCOL, "backend": "tensorflow"}, configs)
    with pytest.raises(ValueError, match="another protocol .*differs in backend"):
        extend(str(tmp_path), {**PROTOCOL, "backend": "jax"}, configs)


def test_cells_share_one_jax_cache(monkeypatch, tmp_path):
    """A sweep's cell processes get one JAX compilation cache, SWEEP/jax-cache, unless the
    user set JAX_COMPILATION_CACHE_DIR; and watch the sweep (its PID)."""
    from dgg_tf.core import stopping
    from dgg_tf.sweep.run import cell_env
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    env = cell_env(str(tmp_path / "s"))
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "s" / "jax-cache")
    assert env[stopping.PARENT_ENV] == str(os.getpid())
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert cell_env(str(tmp_path / "s"))["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "mine")


def test_the_shared_jax_cache_is_locked(monkeypatch, tmp_path):
    """With filelock installed, the cells' shared cache has a size limit, which is what
    makes JAX lock each read and write (none reads an entry another is still writing):
    a JAX process with the cells' environment leaves its lock file beside the entry it
    wrote. A limit the user set is kept; without filelock none is set (JAX would refuse
    one)."""
    import importlib.util

    from dgg_tf.backend import startup
    from dgg_tf.sweep.run import cell_env
    found = importlib.util.find_spec
    limit = {"JAX_COMPILATION_CACHE_MAX_SIZE": str(startup.SHARED_JAX_CACHE_BYTES)}
    assert startup.shared_jax_cache({}, "c") == {
        "JAX_COMPILATION_CACHE_DIR": "c", **(limit if found("filelock") else {})}
    mine = {"JAX_COMPILATION_CACHE_DIR": "d", "JAX_COMPILATION_CACHE_MAX_SIZE": "12345"}
    assert startup.shared_jax_cache(dict(mine), "c") == mine
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "filelock" else found(name, *a))
    assert startup.shared_jax_cache({}, "c") == {"JAX_COMPILATION_CACHE_DIR": "c"}
    monkeypatch.setattr(importlib.util, "find_spec", found)
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    if found("filelock") is None or found("jax") is None:
        pytest.skip("needs filelock and JAX")
    env = {**cell_env(str(tmp_path / "s")), "JAX_PLATFORMS": "cpu",
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    assert env["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(startup.SHARED_JAX_CACHE_BYTES)
    ran = subprocess.run([sys.executable, "-c", "import jax; jax.jit(lambda x: x * 3)(1.0)"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    cache = tmp_path / "s" / "jax-cache"
    assert (cache / ".lockfile").exists() and any(cache.glob("*-cache*")), os.listdir(cache)
