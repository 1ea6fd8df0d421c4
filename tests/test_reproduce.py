"""reproduce/mnist.py end to end on a tiny MNIST-shaped data set (300 digits upscaled
to 28 x 28, written as idx files) with a tiny 784-16-16-32-10 network: every output
file, resume after a stop (bit-identical numbers, no duplicate rows), refused
non-empty --out, --audit-only, and the exit code 2 of user errors. The data and the
runs compared against (``tiny``, ``reference``, ``fresh``) are in tests/tiny_mnist.py
and conftest.py."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from tiny_mnist import (STOP_MID_EPOCH, N, assert_same_run, base_args, mnist,  # noqa: F401
                        one_thread_for_kmeans, run_fresh)

from dgg_tf.cli.commands import SHARED_MNIST
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.history import read_history_csv
from dgg_tf.core.weight_files import load_weights_h5
from dgg_tf.report import QUIRK_IDS

OUTPUTS = ("config.json", "history.csv", "model.h5", "predictions.npy", "curves.png", "report.md",
           "report.json", "checkpoint.npz")


@pytest.mark.backends
def test_end_to_end_writes_every_output(reference):
    for name in OUTPUTS:
        assert (reference / name).is_file(), name
    hist = read_history_csv(reference / "history.csv")
    assert [r["epoch"] for r in hist] == [1, 2]
    for key in ("loss", "reconstruction", "gmm", "cluster_entropy", "latent_entropy", "prior", "lr",
                "running_acc", "running_nmi", "full_acc", "full_nmi", "recon_bce", "gmm_variance",
                "seconds"):
        assert all(r[key] is not None for r in hist), key
    cfg = json.loads((reference / "config.json").read_text())
    assert cfg["variant"] == "code" and cfg["seed"] == 0 and cfg["n_samples"] == N
    assert cfg["config"]["encoder_dims"] == [16, 16, 32] and cfg["config"]["prior"] == "code"
    assert set(cfg["config"]) == set(DGGConfig().to_dict())
    import keras
    backend = keras.backend.backend()                # the run's backend and its version
    assert {backend, "keras", "numpy", "scikit-learn"} <= set(cfg["library_versions"])
    assert cfg["library_versions"]["backend"] == backend
    assert cfg["weights_provenance"]["path"].endswith("ae.h5") and cfg["data"]
    assert cfg["neighbors"]["source"] == "raw_knn" and cfg["command"]
    assert 0 < cfg["neighbors"]["purity"] <= 1
    params, prov = load_weights_h5(reference / "model.h5")
    assert {"gmm/mean", "gmm/std", "classifier/W", "logvar/W", "encoder1/W"} <= set(params)
    assert prov["variant"] == "code"
    pred = np.load(reference / "predictions.npy")
    assert pred.shape == (N,) and pred.max() < 10
    rep = json.loads((reference / "report.json").read_text())
    for q in QUIRK_IDS:
        assert {"title", "code", "paper"} <= set(rep[q])
    assert rep["runs"][0]["epochs"] == 2
    assert "ref" in rep["Q12"]["running_vs_full_by_run"]
    md = (reference / "report.md").read_text()
    assert all(f"## {q}:" in md for q in QUIRK_IDS)
    first = cfg["first_steps"]                       # the default probe: after step 1
    assert [e["step"] for e in first] == [1] and 0 < first[0]["full_acc"] <= 1
    assert rep["runs"][0]["first_steps"] == first and "after step 1: " in md


def test_resume_after_stop_is_identical(tiny, reference, tmp_path):
    """Stopped cleanly after epoch 1, then --resume to 2: the reference run."""
    # stopped cleanly after epoch 1, then continued to 2
    a = tmp_path / "a"
    assert mnist.main(base_args(tiny, a, "--epochs", "1")) == 0
    assert len(read_history_csv(a / "history.csv")) == 1
    assert mnist.main(base_args(tiny, a, "--epochs", "2", "--resume")) == 0
    assert_same_run(a, reference)
    cfg_a, cfg_ref = (json.loads((d / "config.json").read_text()) for d in (a, reference))
    assert cfg_a["first_steps"] == cfg_ref["first_steps"]          # kept across --resume
    # resuming a finished run changes nothing; another config is refused
    assert mnist.main(base_args(tiny, a, "--epochs", "2", "--resume")) == 0
    assert_same_run(a, reference)
    assert mnist.main(base_args(tiny, a, "--epochs", "3", "--resume", "--set", "prior=paper")) == 2


@pytest.mark.backends
def test_resume_after_kill_is_identical(tiny, fresh, tmp_path):
    """kill -9 mid-epoch, then --resume: the history, weights and predictions of an
    uninterrupted run (on the backend of KERAS_BACKEND: the processes inherit it)."""
    # killed (kill -9) in the middle of epoch 2, after epoch 1's checkpoint, then resumed.
    # Every process here is a fresh one, and so is its reference: bit-identical results
    # are a property of two fresh processes on one machine, not of a fresh process against
    # this one (the test process has other state: thread pools limited by the fixture
    # above, kernels already chosen by earlier tests; on an AVX2-only EPYC the two
    # differed by ~1e-8 relative).
    b = tmp_path / "b"
    killed = run_fresh("SIGKILL", "1", *base_args(tiny, b, "--epochs", "2"),
                       wrapper=STOP_MID_EPOCH)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((b / "run.lock").read_text())["pid"] > 0       # a stale lock is left
    assert len(read_history_csv(b / "history.csv")) == 1
    assert not (b / "model.h5").exists()
    (b / "checkpoint.npz.tmp-12345").write_bytes(b"half a file")    # a save interrupted later
    resumed = run_fresh(*base_args(tiny, b, "--epochs", "2", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    hist = read_history_csv(b / "history.csv")
    assert [r["epoch"] for r in hist] == [1, 2]                      # no duplicate rows
    assert not list(b.glob("*.tmp-*"))
    assert_same_run(b, fresh)
    rep = json.loads((b / "report.json").read_text())
    assert rep["runs"][0]["epochs"] == 2


def test_resume_after_kill_in_the_first_epoch(tiny, fresh, tmp_path):
    """Killed during epoch 1: only the epoch-0 checkpoint (init, classifier, audit)
    exists, and --resume gives the uninterrupted run (fresh processes, as above)."""
    c = tmp_path / "c"
    killed = run_fresh("SIGKILL", "0", *base_args(tiny, c, "--epochs", "2"),
                       wrapper=STOP_MID_EPOCH)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (c / "history.csv").exists() and (c / "checkpoint.npz").exists()
    assert run_fresh(*base_args(tiny, c, "--epochs", "2", "--resume")).returncode == 0
    assert_same_run(c, fresh)


def test_non_empty_out_refused(tiny, reference, capsys):
    assert mnist.main(base_args(tiny, reference, "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--resume" in err and "Traceback" not in err


def test_audit_only_has_every_quirk(tiny, tmp_path):
    out = tmp_path / "audit"
    assert mnist.main(base_args(tiny, out, "--audit-only")) == 0
    assert not (out / "history.csv").exists() and not (out / "model.h5").exists()
    md = (out / "report.md").read_text()
    for q in QUIRK_IDS:
        assert f"## {q}:" in md
    rep = json.loads((out / "report.json").read_text())
    assert [k for k in rep if k.startswith("Q")] == list(QUIRK_IDS)
    # code variant: similarity no_inform ignores sigma -> exact zeros
    q7 = rep["Q7"]
    assert q7["configured_weights"]["max_abs_diff"] == 0.0
    assert q7["configured_weights"]["n_differing"] == 0
    assert q7["loss_effect"]["max_abs_term_change"] == 0.0
    assert rep["Q1"]["purity"]["nearest"] is not None
    assert json.loads((out / "config.json").read_text())["audit_only"] is True


@pytest.mark.parametrize("setting, expect", [
    ("prior=bogus", "choose one of code, paper"),
    ("similarity=gaus", "no_inform, gauss, inv_gauss, student_t, kl"),
    ("learning_rte=1", "unknown setting"),
    ("sigma=ten", "expects a float"),
])
def test_bad_set_exits_2_with_choices(tmp_path, capsys, setting, expect):
    assert mnist.main(["--variant", "paper", "--set", setting, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err and err.count("\n") == 1


def test_user_errors_exit_2(tiny, tmp_path, capsys):
    from dgg_tf.core.tables import save_table
    cases = []
    # missing data
    cases.append((["--data", str(tmp_path / "nowhere")], "does not exist"))
    # weights that do not fit the configured network (default 784-500-500-2000-10)
    cases.append((["--set", "encoder_dims=500,500,2000"], "has shape"))
    # a table for another N
    table = np.tile(np.arange(200)[:, None], (1, 41)) % 200
    table[:, 1:] = (table[:, 1:] + np.arange(1, 41)) % 200
    save_table(tmp_path / "t200.npz", table.astype(np.int32), neighbor_selection="random_top100")
    cases.append((["--neighbors", str(tmp_path / "t200.npz")], "200 rows"))
    for i, (extra, expect) in enumerate(cases):
        args = base_args(tiny, tmp_path / f"out{i}", "--epochs", "1")
        if extra[0] == "--neighbors":
            args = [a for a in args if a not in ("--subset", str(N))] + extra
        else:
            args = args + extra
        assert mnist.main(args) == 2, extra
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err, err
    # probe steps outside the first epoch (N samples, batch 100: 3 steps), or not numbers
    assert mnist.main(base_args(tiny, tmp_path / "p", "--probe-steps", "4")) == 2
    assert "1..3" in capsys.readouterr().err and not (tmp_path / "p").exists()
    for bad in ("0", "1,x"):                                       # argparse's own exit
        with pytest.raises(SystemExit) as exited:
            mnist.main(base_args(tiny, tmp_path / "p", "--probe-steps", bad))
        assert exited.value.code == 2 and "--probe-steps" in capsys.readouterr().err
    # wrong weight file (not weights at all)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert mnist.main(base_args(tiny, tmp_path / "o", "--weights", str(tmp_path / "junk.h5"))) == 2
    assert "unrecognised weights format" in capsys.readouterr().err


@pytest.mark.parametrize("setting, expect", [("sigma=0", "sigma must be a finite number > 0"),
                                             ("sigma=nan", "finite"),
                                             ("learning_rate=inf", "finite")])
def test_bad_values_refused_before_any_work(tmp_path, capsys, setting, expect):
    out = tmp_path / "never"
    assert mnist.main(["--set", setting, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert not out.exists()


def test_busy_out_names_the_pid(tiny, reference, tmp_path, capsys):
    """A second run on a directory whose lock a live process holds is refused, with or
    without --resume, naming that PID; nothing in the directory changes."""
    run = tmp_path / "busy"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "run.lock").write_text(json.dumps({"pid": sleeper.pid}))
        for extra in ((), ("--resume",)):
            assert mnist.main(base_args(tiny, run, "--epochs", "1", *extra)) == 2
            assert f"in use by PID {sleeper.pid}" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [p.name for p in run.iterdir()] == ["run.lock"]


def test_unusable_out_and_mismatched_neighbors(tiny, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert mnist.main(base_args(tiny, tmp_path / "afile" / "run", "--epochs", "1")) == 2
    assert "is not a directory" in capsys.readouterr().err
    # --subset with a table for all 300 samples: refused, not silently rebuilt
    from dgg_tf.core.tables import save_table
    table = (np.arange(N)[:, None] + np.arange(41)[None]) % N
    save_table(tmp_path / "t300.npz", table.astype(np.int32), neighbor_selection="random_top100")
    args = base_args(tiny, tmp_path / "sub", "--epochs", "1", "--neighbors", str(tmp_path / "t300.npz"))
    args[args.index("--subset") + 1] = "200"
    assert mnist.main(args) == 2
    assert "300 rows but the data has 200" in capsys.readouterr().err
    assert not (tmp_path / "sub").exists()


@pytest.mark.skipif(not os.path.isdir(SHARED_MNIST), reason="needs ../shared/data/mnist")
def test_subset_uses_the_shipped_siamese_embedding(tmp_path, capsys):
    """--subset builds the original's table inside the subset from the shipped Siamese
    network (not raw pixels), records its purity, and prints it."""
    out = tmp_path / "sub"
    assert mnist.main(["--subset", "200", "--audit-only", "--audit-batches", "1",
                       "--set", "classifier_epochs=1", "--set", "kmeans_n_init=1",
                       "--verbose", "1", "--out", str(out)]) == 0
    info = json.loads((out / "config.json").read_text())["neighbors"]
    assert info["source"] == "siamese_subset" and info["n_samples"] == 200
    by_mode = info["purity_by_mode"]
    assert info["purity"] == pytest.approx(by_mode["random_top100"])
    assert 0.1 < by_mode["random_top100"] < by_mode["nearest"] <= 1   # ~20 images per class
    captured = capsys.readouterr()
    assert f"purity {info['purity']:.3f}" in captured.out and "below 0.8" in captured.err
