"""How a run of reproduce/mnist.py stops: SIGTERM in the middle of an epoch stops it
like Ctrl-C (exit 143, a message naming the real run folder, the lock released, the
last epoch's checkpoint kept), and --resume then gives the uninterrupted run; sigma's
message says what is allowed."""
import os
import signal
import subprocess
import sys

import pytest

from dgg_tf.config import DGGConfig
from dgg_tf.report import read_history_csv
from test_reproduce import (ROOT, assert_same_run, base_args, mnist,  # noqa: F401
                            one_thread_for_kmeans, reference, tiny)

TERM_MID_EPOCH = """
import importlib.util, os, signal, sys
import keras
spec = importlib.util.spec_from_file_location("m", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
class Term(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            os.kill(os.getpid(), signal.SIGTERM)
sys.exit(m.main(sys.argv[2:], callbacks=[Term()]))
"""


def test_sigterm_stops_like_ctrl_c_and_resumes_bit_for_bit(tiny, reference, tmp_path):
    out = tmp_path / "run"
    stopped = subprocess.run([sys.executable, "-c", TERM_MID_EPOCH,
                              os.path.join(ROOT, "reproduce", "mnist.py"),
                              *base_args(tiny, out, "--epochs", "2")],
                             capture_output=True, text=True)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "stopped by SIGTERM" in stopped.stderr and f"--resume --out {out}" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert not (out / "run.lock").exists()                   # released, not left stale
    assert (out / "checkpoint.npz").exists()
    assert len(read_history_csv(out / "history.csv")) == 1
    assert mnist.main(base_args(tiny, out, "--epochs", "2", "--resume")) == 0
    assert_same_run(out, reference)


@pytest.mark.parametrize("sigma", [-1.0, 0.0, float("nan"), float("inf")])
def test_sigma_message_says_what_is_allowed(sigma):
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        DGGConfig(sigma=sigma)


@pytest.mark.parametrize("extra, message", [
    (("--epochs", "0"), "--epochs must be positive, got 0"),
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


def test_resume_or_start_and_drop_checkpoint(tiny, reference, tmp_path):
    out = tmp_path / "new"
    assert mnist.main(base_args(tiny, out, "--epochs", "2", "--resume-or-start",
                                "--drop-checkpoint")) == 0
    assert_same_run(out, reference)
    assert not (out / "checkpoint.npz").exists() and (out / "model.h5").exists()
