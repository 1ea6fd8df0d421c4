"""The run-directory guard: the lock (busy, stale, released), the checks that run
before any work, and no directory left behind by a refused run."""
import json
import os
import subprocess
import sys

import pytest

from dgg_tf.core.rundir import LOCK, RunDirError, RunLock, check_writable, open_run_dir


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_is_exclusive_and_released(tmp_path):
    run = tmp_path / "run"
    lock = open_run_dir(run)
    owner = json.loads((run / LOCK).read_text())
    assert owner["pid"] == os.getpid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK).write_text(json.dumps({"pid": sleeper.pid, "started": "then"}))
        with pytest.raises(RunDirError, match=f"in use by PID {sleeper.pid}"):
            RunLock(str(run)).acquire()
        with pytest.raises(RunDirError, match=f"in use by PID {sleeper.pid}"):
            open_run_dir(run, resume=True)
    finally:
        sleeper.kill()
        sleeper.wait()
    (run / LOCK).write_text(json.dumps({"pid": os.getpid()}))
    lock.release()
    assert not (run / LOCK).exists()


def test_stale_lock_is_taken_over_with_a_notice(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    pid = dead_pid()
    (run / LOCK).write_text(json.dumps({"pid": pid}))
    (run / "checkpoint.npz.tmp-99").write_bytes(b"half")
    with open_run_dir(run, resume=True):
        assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
    assert f"PID {pid} is not running" in capsys.readouterr().err
    assert not (run / "checkpoint.npz.tmp-99").exists() and not (run / LOCK).exists()


def test_refusals_leave_no_directory(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "history.csv").write_text("x")
    with pytest.raises(RunDirError, match="not empty"):
        open_run_dir(tmp_path / "full")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="not a directory"):
        check_writable(tmp_path / "file" / "run")
    with pytest.raises(RunDirError, match="exists and is not a directory"):
        open_run_dir(tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]
