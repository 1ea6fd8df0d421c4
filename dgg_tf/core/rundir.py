"""The run directory (``RunDir``): the one place that names a run's files, checks the
directory before any work, creates it only once every check has passed, locks it while
a run writes to it (so that two processes never write the same run's files), and reads
and writes its files atomically: config.json (the run's ``RunRecord``), history.csv,
predictions.npy, and the record of checkpoint.npz. No TensorFlow."""
from __future__ import annotations

import datetime
import glob
import json
import os
import sys

import numpy as np

from dgg_tf.core.checkpoints import read_record as read_checkpoint_record
from dgg_tf.core.files import write_bytes_atomic, write_json_atomic
from dgg_tf.core.history import read_history_csv, write_history_csv
from dgg_tf.core.record import RunRecord

# ---------------------------------------------------------------- the files of a run
CONFIG = "config.json"          # the RunRecord: written before training, and at the end
HISTORY = "history.csv"         # one row per epoch
CHECKPOINT = "checkpoint.npz"   # the DGG network after each epoch (core.checkpoints, "dgg")
MODEL = "model.h5"              # the trained network's weights
PREDICTIONS = "predictions.npy"  # the final cluster of every sample (int64)
CURVES = "curves.png"           # ACC, NMI and loss against epoch
REPORT_MD = "report.md"         # the discrepancy report and the run's summary
REPORT_JSON = "report.json"     # the same numbers under stable keys
LOCK = "run.lock"               # the PID of the process writing the run
FILES = (CONFIG, HISTORY, CHECKPOINT, MODEL, PREDICTIONS, CURVES, REPORT_MD, REPORT_JSON, LOCK)


class RunDirError(ValueError):
    """The run directory cannot be used (busy, not writable, not empty)."""


def check_writable(path):
    """Raise RunDirError unless ``path`` is (or can be created as) a writable directory.
    Creates nothing: it probes the nearest existing ancestor with a temporary file."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"output directory {path} exists and is not a directory")
    probe_dir = path
    while not os.path.isdir(probe_dir):
        parent = os.path.dirname(probe_dir)
        if parent == probe_dir or (os.path.exists(parent) and not os.path.isdir(parent)):
            raise RunDirError(f"output directory {path} cannot be created: {parent} is not a "
                              "directory")
        probe_dir = parent
    probe = os.path.join(probe_dir, f".dgg_tf-write-test-{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise RunDirError(f"output directory {path} is not writable ({probe_dir}: "
                          f"{e.strerror or e})") from None


def check_not_busy(path):
    """RunDirError naming the PID if a running process holds the directory's lock."""
    owner = _read_owner(os.path.join(path, LOCK))
    pid = owner.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
        raise RunDirError(
            f"run directory {path} is in use by PID {pid} (since {owner.get('started', '?')}); "
            "wait for it to finish or stop it, then retry")


def holds_run(path):
    """Whether a run has started in ``path`` (``RunDir.holds_run``)."""
    return RunDir(path).holds_run()


def check_new_or_resumable(path, resume):
    """Not busy; and a fresh run needs an empty or absent directory (--resume needs
    nothing more)."""
    if not os.path.isdir(path):
        return
    check_not_busy(path)
    if resume:
        return
    contents = [f for f in os.listdir(path) if f != LOCK]
    if contents:
        raise RunDirError(f"output directory {path} is not empty; choose a new --out, or "
                          "pass --resume to continue the run in it")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock on a run directory: ``run.lock`` holds the owner's PID. A
    lock whose PID no longer runs is stale and taken over, with a notice on stderr."""

    def __init__(self, directory):
        self.path = os.path.join(directory, LOCK)
        self.held = False

    def acquire(self):
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "started": _now(), "argv": sys.argv}, f)
            self.held = True
            return self
        raise RunDirError(f"could not lock {self.path}: another process keeps taking it")

    def _take_over_if_stale(self):
        check_not_busy(os.path.dirname(self.path))
        pid = _read_owner(self.path).get("pid")
        print(f"note: taking over the stale lock {self.path} (PID {pid} is not running)",
              file=sys.stderr, flush=True)
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def release(self):
        if self.held and _read_owner(self.path).get("pid") == os.getpid():
            os.remove(self.path)
        self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_owner(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def open_run_dir(path, resume=False):
    """Create (if needed) and lock the run directory ``path`` (``RunDir.open``); returns
    the held ``RunLock``."""
    return RunDir(path).open(resume)


class RunDir:
    """A run directory at ``path`` (kept as given: the paths it names start with it).

    ``check`` before any work, ``open`` to create and lock it; the files by name
    (``file``, or the properties ``config_json``, ``history_csv``, ...); the run's
    record (``read_record``/``write_record``: config.json), its epochs
    (``read_history``/``write_history``: history.csv), its predictions and its
    checkpoint's record. Every write is atomic and refused while another running
    process holds the directory's lock."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __fspath__(self):
        return self.path

    def __repr__(self):
        return f"RunDir({self.path!r})"

    @property
    def name(self):
        """The directory's own name (a run's name in reports)."""
        return os.path.basename(os.path.normpath(self.path))

    def file(self, name):
        """The path of the run's file ``name`` (one of ``FILES``)."""
        if name not in FILES:
            raise ValueError(f"{name!r} is not a file of a run directory; they are "
                             f"{', '.join(FILES)}")
        return os.path.join(self.path, name)

    config_json = property(lambda self: self.file(CONFIG))
    history_csv = property(lambda self: self.file(HISTORY))
    checkpoint = property(lambda self: self.file(CHECKPOINT))
    model_h5 = property(lambda self: self.file(MODEL))
    predictions_npy = property(lambda self: self.file(PREDICTIONS))
    curves_png = property(lambda self: self.file(CURVES))
    report_md = property(lambda self: self.file(REPORT_MD))
    report_json = property(lambda self: self.file(REPORT_JSON))
    lock_file = property(lambda self: self.file(LOCK))

    # ------------------------------------------------------------ before any work
    def check(self, resume=False, must_hold_run=False):
        """Raise RunDirError unless a run can start (or, with ``resume``, continue)
        here: writable, not busy, and for a fresh run empty or absent. With
        ``must_hold_run`` (--resume) a run must have started here. Creates nothing."""
        check_writable(self.path)
        check_new_or_resumable(self.path, resume or must_hold_run)
        if must_hold_run and not self.holds_run():    # after the busy check: a PID says more
            raise RunDirError(
                f"--resume: {self.path} holds no run to continue (no {CONFIG}); check the "
                "path, or pass --resume-or-start to start a run there")

    def open(self, resume=False):
        """Create (if needed) and lock the directory; returns the held ``RunLock``.
        Call it after every other check. If locking fails, a directory this call
        created is removed again. Half-written files of a killed run are cleared."""
        path = self.path
        check_writable(path)
        created = not os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        try:
            lock = RunLock(path).acquire()
            check_new_or_resumable(path, resume)
        except BaseException:
            if created:
                for f in os.listdir(path):
                    os.remove(os.path.join(path, f))
                os.rmdir(path)
            elif "lock" in locals():
                lock.release()
            raise
        for stale in glob.glob(os.path.join(glob.escape(path), "*.tmp-*")):
            os.remove(stale)
        return lock

    def holds_run(self):
        """Whether a run has started here: its config.json is written before any
        training (a run killed before its first checkpoint resumes from the start)."""
        return os.path.isfile(self.config_json)

    def _check_writer(self):
        """Writing is for the lock's holder, or anyone while no running process holds it."""
        if os.path.isdir(self.path):
            check_not_busy(self.path)

    # ------------------------------------------------------------ the run's files
    def read_record(self):
        """The run's ``RunRecord`` (config.json), or None before a run has started."""
        if not self.holds_run():
            return None
        with open(self.config_json) as f:
            return RunRecord.from_json(json.load(f))

    def write_record(self, record):
        """Write the run's record (a ``RunRecord``; a config.json dict is read as one)
        to config.json atomically."""
        if not isinstance(record, RunRecord):
            record = RunRecord.from_json(record)
        self._check_writer()
        write_json_atomic(self.config_json, record.to_json())

    def read_history(self):
        """The epoch records of history.csv, or None when there is none yet."""
        if not os.path.isfile(self.history_csv):
            return None
        return read_history_csv(self.history_csv)

    def write_history(self, history):
        """Write the epoch records to history.csv atomically."""
        self._check_writer()
        write_history_csv(self.history_csv, history)

    def read_predictions(self):
        """The final cluster of every sample (predictions.npy), or None."""
        if not os.path.isfile(self.predictions_npy):
            return None
        return np.load(self.predictions_npy, allow_pickle=False)

    def write_predictions(self, pred):
        """Write the final clusters to predictions.npy (int64) atomically."""
        pred = np.asarray(pred).astype(np.int64)
        self._check_writer()
        write_bytes_atomic(self.predictions_npy, lambda f: np.save(f, pred))

    def read_report(self):
        """The report object of report.json, or None."""
        if not os.path.isfile(self.report_json):
            return None
        with open(self.report_json) as f:
            return json.load(f)

    def checkpoint_record(self):
        """The JSON record of checkpoint.npz (``core.checkpoints.read_record``, kind
        "dgg"), or None without one; ``CheckpointFormatError`` (holding its record) for
        an older format's."""
        if not os.path.isfile(self.checkpoint):
            return None
        return read_checkpoint_record(self.checkpoint, "dgg")
