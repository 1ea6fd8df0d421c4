"""How a run of reproduce/mnist.py stops: SIGTERM in the middle of an epoch stops it
like Ctrl-C (exit 143, a message naming the real run folder, the lock released, the
last epoch's checkpoint and curves kept), and --resume then gives the uninterrupted run; sigma's
message says what is allowed."""
import signal

import pytest
from tiny_mnist import (STOP_MID_EPOCH, assert_same_run, base_args, mnist,  # noqa: F401
                        one_thread_for_kmeans, run_fresh)

from dgg_tf.core.config import DGGConfig
from dgg_tf.core.history import read_history_csv


def test_sigterm_stops_like_ctrl_c_and_resumes_bit_for_bit(tiny, fresh, tmp_path):
    """Every run in a fresh process (bits are a property of fresh processes on one
    machine, see test_reproduce): stopped by SIGTERM in epoch 2, then resumed, equals an
    uninterrupted run (``fresh``, the one test_reproduce's kill tests compare with)."""
    out = tmp_path / "run"
    stopped = run_fresh("SIGTERM", "1", *base_args(tiny, out, "--epochs", "2"),
                        wrapper=STOP_MID_EPOCH)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "stopped by SIGTERM" in stopped.stderr and f"--resume --out {out}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert not (out / "run.lock").exists()                   # released, not left stale
    assert (out / "checkpoint.npz").exists()
    assert (out / "curves.png").exists()          # drawn at the stop, of the epoch kept
    assert len(read_history_csv(out / "history.csv")) == 1
    assert run_fresh(*base_args(tiny, out, "--epochs", "2", "--resume")).returncode == 0
    assert_same_run(out, fresh)


@pytest.mark.parametrize("sigma", [-1.0, 0.0, float("nan"), float("inf")])
def test_sigma_message_says_what_is_allowed(sigma):
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        DGGConfig(sigma=sigma)


@pytest.mark.parametrize("extra, message", [
    (("--set", "epochs=0"), "epochs must be at least 1, got 0"),
    (("--resume",), "holds no run to continue"),
    (("--set", "sigma=-1"), "sigma must be a finite number > 0"),
])
def test_refused_before_any_work(tiny, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    assert mnist.main(base_args(tiny, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()                                  # nothing left behind


def test_bad_epochs_refused_by_the_parser(tiny, tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exited:
        mnist.main(base_args(tiny, out, "--epochs", "0"))
    assert exited.value.code == 2
    assert "argument --epochs: must be at least 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_resume_or_start_and_drop_checkpoint(tiny, reference, tmp_path):
    out = tmp_path / "new"
    assert mnist.main(base_args(tiny, out, "--epochs", "2", "--resume-or-start",
                                "--drop-checkpoint")) == 0
    assert_same_run(out, reference)
    assert not (out / "checkpoint.npz").exists() and (out / "model.h5").exists()


@pytest.mark.parametrize("hint, said", [
    (None, "stopped by SIGTERM; continue with the same command plus --resume --out RUN_DIR"),
    ("the same sweep command resumes it", "stopped by SIGTERM; the same sweep command resumes it"),
])
def test_a_stop_names_how_to_resume(hint, said, capsys):
    """A stopped command exits 143 and says how to continue: a single run's --resume,
    or, in a sweep's subprocess, the sweep's own command."""
    from dgg_tf.cli.commands import run_main
    from dgg_tf.core.stopping import Terminated

    def stopped():
        raise Terminated()
    assert run_main(stopped, resume_hint=hint) == 143
    assert capsys.readouterr().err.strip() == said
