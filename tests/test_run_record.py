"""The run record (``RunRecord``: config.json as an object) and the run directory
(``RunDir``: every file of a run by name, its checks, lock and atomic writes). A run
written by dgg_tf 0.3.0 (tests/data/run_v0_3: reproduce/mnist.py --variant code
--subset 1000 --epochs 2, its config.json, history.csv, report.json and
predictions.npy as written) reads back with its numbers, through every reader."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dgg_tf.core import rundir as rundir_module
from dgg_tf.core.record import STAGES, RunRecord, run_summary, summary_lines
from dgg_tf.core.rundir import FILES, LOCK, RunDir, RunDirError, holds_run, open_run_dir
from dgg_tf.report.runfiles import load_run
from dgg_tf.sweep.cells import cell_dir, cell_result, cell_state, record_result
from dgg_tf.sweep.curves import cell_curve, gmm_init_acc

ROOT = pathlib.Path(__file__).resolve().parents[1]
V0_3 = ROOT / "tests" / "data" / "run_v0_3"


def stored():
    return json.loads((V0_3 / "config.json").read_text())


# ---------------------------------------------------------------- a 0.3.0 run, read back
def test_record_of_a_0_3_run_has_its_numbers():
    record = RunDir(V0_3).read_record()
    assert (record.variant, record.seed, record.epochs, record.n_samples) == ("code", 0, 2, 1000)
    assert record.classifier_acc == 0.689
    assert record.gmm_init_acc == 0.855 and record.kmeans_acc == 0.844
    assert record.step1_acc == 0.188
    assert record.final_acc == 0.155 and record.final_nmi == 0.06995859613172029
    assert record.is_finished() and record.is_finished(2) and not record.is_finished(3)
    assert record.configured_epochs == 2 and record.wall_seconds == 8.1
    assert record.info == {"variant": "code", "data": "/work/shared/data/mnist",
                           "subset": 1000, "audit_only": False,
                           "command": "python reproduce/mnist.py --variant code --subset 1000 "
                                      "--epochs 2 --out /work/baseline/mnist_base",
                           "cwd": "/work/wt-base"}
    assert record.warnings == [] and record.resumed == []
    scores = record.stage_scores()
    assert list(scores) == list(STAGES)
    assert scores == {"neighbor_purity": 0.5711, "kmeans_acc": 0.844, "gmm_init_acc": 0.855,
                      "classifier_acc": 0.689, "step1_acc": 0.188, "final_acc": 0.155}


def test_to_json_is_config_json_key_for_key():
    d = stored()
    out = RunDir(V0_3).read_record().to_json()
    assert out == d and list(out) == list(d)          # the same keys, in the same order
    assert "warnings" not in out                      # written only when there are some


def test_summary_recomputed_from_the_files_is_the_stored_one():
    run = RunDir(V0_3)
    record = run.read_record()
    history = run.read_history()
    assert [r["full_acc"] for r in history] == [0.161, 0.155]
    # the summary names the files of the directory the run was written to
    # (a run written then has every entry of today's summary but the newer final_loss)
    again = run_summary(history, record, RunDir(record.out))
    assert again.pop("final_loss") == history[-1]["loss"]
    assert again == record.summary
    assert run.read_report()["summary"] == record.summary
    lines = summary_lines(record.summary)
    assert lines[0] == ("final (epoch 2): ACC 0.1550, NMI 0.0700; best ACC 0.1610 (epoch 1), "
                        "best NMI 0.0700 (epoch 2)")
    assert lines[1] == ("before DGG: GMM init ACC 0.8550, pretrained classifier ACC 0.6890, "
                        "after DGG's first step 0.1880")
    assert lines[-1] == ("report: /work/baseline/mnist_base/report.md; curves: "
                         "/work/baseline/mnist_base/curves.png")


def test_predictions_read_back():
    pred = RunDir(V0_3).read_predictions()
    assert pred.dtype == np.int64 and pred.shape == (1000,)
    # three clusters in use at the end, as the last epoch's record says
    assert len(np.unique(pred)) == RunDir(V0_3).read_history()[-1]["clusters_used"] == 3


def test_every_reader_gives_the_same_numbers(tmp_path):
    run = load_run(V0_3)
    assert (run["name"], run["variant"], run["seed"], run["has_config"]) == \
        ("run_v0_3", "code", 0, True)
    assert run["classifier_acc"] == 0.689 and run["configured_epochs"] == 2
    assert run["finished"]["acc"] == 0.155 and run["first_steps"][0]["full_acc"] == 0.188
    assert run["config"] == stored()["config"]
    assert [r["full_acc"] for r in run["history"]] == [0.161, 0.155]
    assert "Q1" in run["audit"] and "setup" in run["audit"]
    # the same directory as a sweep's cell
    cell = cell_dir(str(tmp_path), "code", 0)
    shutil.copytree(V0_3, cell)
    want = {"classifier_acc": 0.689, "full_acc": 0.155, "full_nmi": 0.06995859613172029,
            "epochs": 2, "wall_seconds": 8.1}
    assert cell_result(str(tmp_path), "code", 0) == want
    assert record_result(RunDir(V0_3).read_record()) == want
    assert cell_state(cell, 2) == "done" and cell_state(cell, 3) == "resume"
    assert cell_state(cell_dir(str(tmp_path), "code", 1), 2) == "new"
    with pytest.raises(FileNotFoundError, match="has not started"):
        cell_result(str(tmp_path), "code", 1)
    assert gmm_init_acc(cell) == 0.855 and cell_curve(cell) == [0.161, 0.155]
    assert gmm_init_acc(tmp_path) is None and cell_curve(tmp_path) == []


# ---------------------------------------------------------------- older and partial records
def test_an_older_record_reads_with_defaults(tmp_path):
    """A config.json written before the first steps, summary and finished entries (or by a
    run killed before it finished) reads with None/empty entries, and writes back as read."""
    old = {k: v for k, v in stored().items() if k not in ("first_steps", "summary", "finished")}
    (tmp_path / "config.json").write_text(json.dumps(old))
    record = RunDir(tmp_path).read_record()
    assert record.first_steps == [] and record.summary is None and record.finished is None
    assert record.step1_acc is None and record.final_acc is None and record.final_nmi is None
    assert not record.is_finished() and record.classifier_acc == 0.689
    assert record.stage_scores() == {"neighbor_purity": 0.5711, "kmeans_acc": 0.844,
                                     "gmm_init_acc": 0.855, "classifier_acc": 0.689,
                                     "step1_acc": None, "final_acc": None}
    assert record.to_json() == old and list(record.to_json()) == list(old)
    assert cell_state(str(tmp_path), 2) == "resume"


def test_a_minimal_record_and_unknown_entries():
    bare = RunRecord.from_json({"variant": "code"})
    assert (bare.variant, bare.config, bare.seed, bare.gmm_init, bare.classifier) == \
        ("code", None, None, None, None)
    assert bare.configured_epochs is None and bare.stage_scores() == {}
    assert bare.library_versions == {} and bare.neighbors == {} and bare.first_steps == []
    later = RunRecord.from_json({**stored(), "written_by": "a later version", "info": 1,
                                 "first_steps": None})
    assert later.info["written_by"] == "a later version" and later.info["info"] == 1
    assert later.first_steps == [] and later.to_json()["written_by"] == "a later version"
    # without labels: no stage can be measured
    assert RunRecord.from_json({k: v for k, v in stored().items()
                                if k != "gmm_init"}).stage_scores() == {}


def test_a_fresh_record_writes_only_what_is_known():
    record = RunRecord(info={"source": "test", "seed": 99}, seed=1, config={"epochs": 3},
                       epochs=3, started="then")
    d = record.to_json()
    assert list(d) == ["source", "seed", "config", "epochs", "library_versions", "n_samples",
                       "neighbors", "weights_provenance", "out", "data_fingerprint",
                       "table_fingerprint", "started"]
    assert d["seed"] == 1                         # a field wins over the caller's entry
    record.warnings.append("collapse: 1 cluster in use after epoch 2")
    assert record.to_json()["warnings"] == ["collapse: 1 cluster in use after epoch 2"]
    assert RunRecord.from_json(record.to_json()).warnings == record.warnings


def test_resumed_by_adds_an_entry_and_the_new_epochs():
    old = RunDir(V0_3).read_record()
    now = RunRecord(info={"command": "again --resume"}, epochs=5, started="later",
                    library_versions={"numpy": "3"})
    resumed = old.resumed_by(now, 2)
    assert resumed.epochs == 5 and resumed.config["epochs"] == 5 and old.config["epochs"] == 2
    assert resumed.resumed == [{"at": "later", "from_epoch": 2, "epochs": 5,
                                "command": "again --resume",
                                "library_versions": {"numpy": "3"}}]
    assert resumed.started == old.started and old.resumed == []
    assert resumed.to_json()["resumed"] == resumed.resumed


# ---------------------------------------------------------------- the run directory
def test_file_names_and_paths(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.path == str(tmp_path / "r") and os.fspath(run) == run.path and run.name == "r"
    assert set(FILES) == {"config.json", "history.csv", "checkpoint.npz", "model.h5",
                          "predictions.npy", "curves.png", "report.md", "report.json",
                          "run.lock"}
    assert run.config_json == str(tmp_path / "r" / "config.json") == run.file("config.json")
    assert run.curves_png.endswith("curves.png") and run.lock_file.endswith(LOCK)
    with pytest.raises(ValueError, match="not a file of a run directory"):
        run.file("notes.txt")
    assert run.read_record() is None and run.read_history() is None
    assert run.read_predictions() is None and run.checkpoint_record() is None
    assert not run.holds_run() and not holds_run(tmp_path / "r")


def test_check_refuses_with_todays_messages(tmp_path, monkeypatch):
    full = tmp_path / "full"
    full.mkdir()
    (full / "history.csv").write_text("x")
    with pytest.raises(RunDirError, match="is not empty; choose a new --out, or pass --resume"):
        RunDir(full).check()
    RunDir(full).check(resume=True)                     # --resume-or-start: allowed
    with pytest.raises(RunDirError, match=r"--resume: .*full holds no run to continue \(no "
                                          r"config.json\); check the path, or pass "
                                          r"--resume-or-start"):
        RunDir(full).check(resume=True, must_hold_run=True)
    (full / "config.json").write_text("{}")
    RunDir(full).check(resume=True, must_hold_run=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a directory"):
        RunDir(tmp_path / "file").check()
    with pytest.raises(RunDirError, match="cannot be created: .* is not a directory"):
        RunDir(tmp_path / "file" / "run").check()

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(rundir_module, "open", denied, raising=False)   # root ignores modes
    with pytest.raises(RunDirError, match=r"is not writable \(.*: Permission denied\)"):
        RunDir(tmp_path / "new").check()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]   # nothing made


HOLD = """
import sys, time
from dgg_tf.core.rundir import RunDir
lock = RunDir(sys.argv[1]).open(resume=True)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_process_is_refused_and_writes_are_atomic(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    record = RunDir(V0_3).read_record()
    with run.open():
        run.write_record(record)
        run.write_history([{"epoch": 1, "full_acc": 0.5, "loss": 1.25, "note": None}])
        run.write_predictions(np.array([0, 2, 1], np.int32))
        with pytest.raises(TypeError):                       # a record that is not JSON
            run.write_record(RunRecord(info={"bad": object()}))

        def full_disk(fd):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(os, "fsync", full_disk)          # fails once the file is written
        with pytest.raises(OSError, match="No space left"):
            run.write_record(RunRecord(seed=5))
        monkeypatch.undo()
    assert run.read_record() == record                        # the earlier file, whole
    assert json.loads(pathlib.Path(run.config_json).read_text()) == stored()
    assert run.read_history() == [{"epoch": 1, "full_acc": 0.5, "loss": 1.25, "note": None}]
    assert run.read_predictions().dtype == np.int64
    assert sorted(os.listdir(run.path)) == ["config.json", "history.csv", "predictions.npy"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    other = subprocess.Popen([sys.executable, "-c", HOLD, run.path], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        busy = f"in use by PID {other.pid}"
        with pytest.raises(RunDirError, match=busy):
            run.open(resume=True)
        with pytest.raises(RunDirError, match=busy):
            open_run_dir(run.path, resume=True)
        with pytest.raises(RunDirError, match=busy):
            run.check(resume=True, must_hold_run=True)
        with pytest.raises(RunDirError, match=busy):
            run.write_record(record)
        with pytest.raises(RunDirError, match=busy):
            run.write_history([])
    finally:
        other.kill()
        other.wait()
    assert run.read_record() == record                        # nothing written meanwhile
    with run.open(resume=True):                               # its lock is stale now
        run.write_record(RunRecord.from_json({**stored(), "warnings": ["w"]}))
    assert run.read_record().warnings == ["w"]


def test_curves_png_is_drawn_at_most_every_curves_every_s(monkeypatch):
    """While a run trains, history.csv after every epoch, curves.png only once
    CURVES_EVERY_S have passed since the last drawing (or the run's start); at the end or
    a stop (``final``) whenever it changed."""
    from types import SimpleNamespace

    from dgg_tf.api import observers
    clock, drawn, written, history = [0.0], [], [], []
    monkeypatch.setattr(observers.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(observers.rep, "plot_curves", lambda path, runs: drawn.append(
        len(runs[0]["history"])))
    files = observers.RunFiles(SimpleNamespace(write_history=lambda h: written.append(len(h)),
                                               curves_png="curves.png"), stage=None)
    files.run = SimpleNamespace(history=history)
    files.report_run = lambda: {"history": list(history)}
    every = observers.CURVES_EVERY_S
    assert every == 60.0
    for epoch in range(1, 6):                     # an epoch every 0.4 x the interval
        clock[0] += 0.4 * every
        history.append({"epoch": epoch})
        files.curves()
    assert written == [1, 2, 3, 4, 5] and drawn == [3]          # at 1.2 x, then not yet
    files.curves(final=True)
    files.curves(final=True)                                  # unchanged: not again
    assert drawn == [3, 5]
