"""Stopping reproduce/sweep.py stops it (issue 25, item 4). SIGTERM to the sweep alone, or
through ``timeout`` (which signals the sweep and then its whole process group), reaches
every running cell: each keeps its last checkpoint and releases its lock, the sweep
writes sweep.json and sweep.md of what has finished and exits 143 within seconds, and
each cell is left for the same command to resume. A SIGKILLed sweep's cells stop by themselves. And the
mechanism that let cells train on: a signal handler's raise that Python discards
because it ran inside a weakref or garbage-collector callback.

A 2-job tiny sweep of 2000 blobs (a 64-16-16-32 autoencoder, 100 steps an epoch) on
the session's Keras backend; the processes are found in /proc (Linux)."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from blob_inputs import blob_inputs

from dgg_tf.core.config import DGGConfig
from dgg_tf.sweep.cells import SWEEP_RESUMES, cell_dir, cell_state, prepare
from dgg_tf.sweep.protocols import sweep_configs

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                                reason="finds the sweep's processes in /proc")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "reproduce", "sweep.py")
SETTINGS = ["input_dim=64", "encoder_dims=16,16,32", "classifier_epochs=1", "kmeans_n_init=1",
            "batch_size=20"]
#: Seconds from the signal until the sweep has exited with its cells: the issue's "one
#: epoch (here well under a second) plus 30 s".
BOUND = 30


def _args(path, epochs):
    return ["--protocol", "tiny", "--configs", "code", "--seeds", "2", "--jobs", "2",
            "--epochs", str(epochs), "--out", str(path),
            *[a for s in SETTINGS for a in ("--set", s)]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """2000 blobs in (0, 1)^64 with labels, raw-kNN tables and a tiny autoencoder file;
    inside (0.1, 0.9): no saturation."""
    cfg = DGGConfig(input_dim=64, encoder_dims=(16, 16, 32), batch_size=20)
    return blob_inputs(tmp_path_factory.mktemp("stop_in"), 2000, cfg, sharpness=5.0)


def _prepare(path, inputs, epochs):
    """The sweep the command line ``_args`` makes, on the blobs (the command resumes it)."""
    spec = importlib.util.spec_from_file_location("sweep_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    protocol = script.make_protocol(script.build_parser().parse_args(_args(path, epochs)))
    x, y, tables, weights = inputs
    prepare(str(path), protocol, sweep_configs(protocol, ["code"]), x, y, tables, weights,
            {"source": "blobs"})


def _start(path, epochs, wrapper=()):
    """reproduce/sweep.py on this checkout, in a session of its own (as from a shell)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    out = open(f"{path}.out", "a")
    return subprocess.Popen([*wrapper, sys.executable, SCRIPT, *_args(path, epochs)],
                            stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _output(path):
    logs = sorted((path / "logs").glob("*.log")) if (path / "logs").exists() else []
    return "\n".join([open(f"{path}.out").read()] + [f"--- {f.name}\n" + f.read_text()[-3000:]
                                                      for f in logs])


def _wait_for(path, proc, text, timeout=150):
    """Until both cells' logs hold ``text``."""
    logs = [path / "logs" / f"code-seed-{s}.log" for s in (0, 1)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, _output(path)
        if all(f.exists() and text in f.read_text() for f in logs):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in both logs after {timeout} s\n" + _output(path))


def _stat(pid):
    """(state, parent PID, start time) of a process from /proc, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), fields[19]


def _children(pid):
    """{PID: start time} of the processes whose parent is ``pid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat and stat[1] == pid:
                found[int(entry)] = stat[2]
    return found


def _running(procs):
    """The processes of {PID: start time} still running (not gone, not a zombie)."""
    return [pid for pid, start in procs.items()
            if (s := _stat(pid)) is not None and s[2] == start and s[0] != "Z"]


def _kill(procs):
    for pid in _running(procs):
        os.kill(pid, signal.SIGKILL)


# on JAX too (CI): the stop under ``timeout`` (where the GPU sweep's cells trained on) and
# the lost raise; the resume and the SIGKILL test do not depend on the backend
@pytest.mark.parametrize("how", ["sweep", pytest.param("timeout", marks=pytest.mark.backends)])
def test_sigterm_stops_every_cell_writes_the_summary_and_resumes(inputs, tmp_path, how):
    """``kill PID`` (the sweep alone), or ``timeout`` at the end of its budget: it sends
    SIGTERM to the sweep and then to the sweep's process group. Each cell stops once
    past its first epoch, keeping its last checkpoint; sweep.md holds no finished cell but
    each cell's curve up to the epoch it reached; each cell is left in the state the
    same command resumes from (test_sweep's test_resumes_a_killed_cell runs that resume).
    (The signal may come while epoch 2's files are being written: 1 epoch or more.)"""
    if how == "timeout" and shutil.which("timeout") is None:
        pytest.skip("no timeout command")
    # 30 epochs, so that under load no cell can finish them all while the other is still
    # reaching epoch 2 (8 did, once, at a load of 11)
    epochs, path = 30, tmp_path / "s"
    _prepare(path, inputs, epochs)
    proc = _start(path, epochs, ["timeout", "600"] if how == "timeout" else [])
    cells = {}
    try:
        _wait_for(path, proc, "\nepoch=2 ")          # both have epoch 1's checkpoint
        sweep = proc.pid if how == "sweep" else next(iter(_children(proc.pid)))
        cells = _children(sweep)
        assert len(cells) == 2, _output(path)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)    # timeout passes it on as when its time is up
        try:
            code = proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - t0
        left = _running(cells)
    finally:
        _kill(cells)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = _output(path)
    assert code == 128 + signal.SIGTERM and took < BOUND, (code, took, out)
    assert not left, out                                  # no cell outlives the sweep
    for seed in (0, 1):
        cell = cell_dir(str(path), "code", seed)
        assert not os.path.exists(os.path.join(cell, "run.lock")), out     # released
        assert cell_state(cell, epochs) == "resume"
        log = (path / "logs" / f"code-seed-{seed}.log").read_text()
        assert f"stopped by SIGTERM; {SWEEP_RESUMES}" in log and "--resume --out" not in log
    summary = json.loads((path / "sweep.json").read_text())["configs"]["code"]
    reached = [len(c) for c in summary["curves"].values()]
    assert summary["full_acc"] == [None, None] and all(1 <= n < epochs for n in reached), out
    assert "| code | 0/2 |" in (path / "sweep.md").read_text()


def test_cells_of_a_killed_sweep_stop_by_themselves(inputs, tmp_path):
    """SIGKILL gives the sweep no chance to stop its cells; each stops within seconds
    (the kernel's parent-death signal, or its check of the parent as each batch begins).
    200 epochs: an orphan that trained on would run far past the bound."""
    epochs, path = 200, tmp_path / "s"
    _prepare(path, inputs, epochs)
    proc = _start(path, epochs)
    cells = {}
    try:
        _wait_for(path, proc, "DGG training: started")
        cells = _children(proc.pid)
        assert len(cells) == 2, _output(path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + BOUND
        while _running(cells) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _running(cells)
    finally:
        _kill(cells)
    out = _output(path)
    assert not left, out                     # what the issue requires: no orphan trains on
    # Not asserted: that each cell also printed "stopped by SIGTERM" and released its
    # lock. In one of about six runs one cell ended at once without either, its log ending
    # at "DGG training: started" (the parent-death signal taken by the default action,
    # cause not found); a lock left so is taken over by the next run, with a note.
    stopped = sum("stopped by SIGTERM" in (path / "logs" / f"code-seed-{s}.log").read_text()
                  for s in (0, 1))
    assert stopped >= 1, out


@pytest.mark.backends
def test_a_stop_lost_in_a_weakref_callback_still_stops_training():
    """Python runs a signal handler between any two bytecodes of the main thread, also
    inside a weakref or garbage-collector callback, where its exception is only
    reported as unraisable and the program goes on. JAX runs such callbacks all the
    time, and so cells of a stopped sweep trained on (their logs: "Exception ignored in:
    <function _xla_gc_callback ...> ... Terminated", or in WeakKeyDictionary's remove).
    The stop is recorded and raised again after the next batch."""
    import weakref

    import keras

    from dgg_tf.cli.commands import Terminated, run_main
    from dgg_tf.train.fit import LossTrainer, fit_epochs

    lost = []

    def sigterm_inside_a_weakref_callback():
        class Thing:
            pass

        def callback(ref):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):            # the handler runs here, inside the callback
                pass
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing                           # the callback runs now (ref is still alive)
        assert ref() is None

    begun = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            begun.append(batch)
            if len(begun) == 2:
                sigterm_inside_a_weakref_callback()

    x = np.random.default_rng(0).random((40, 4)).astype(np.float32)
    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    trainer = LossTrainer(net, lambda network, rows: keras.ops.sum(network(rows) ** 2))

    def body():
        fit_epochs(trainer, keras.optimizers.SGD(0.01), lambda index: x[index], len(x), 4, 0,
                   0, 3, callbacks=[Probe()], verbose=0)
        return 0
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: lost.append(u.exc_type)
    try:
        code = run_main(body)
    finally:
        sys.unraisablehook = hook
    assert code == 128 + signal.SIGTERM
    assert lost == [Terminated]             # the handler's own raise was lost ...
    assert len(begun) == 2                  # ... and raised again at the end of that batch
