"""The run directory: checked before any work, created only once every check has
passed, and locked while a run writes to it, so that two processes never write the
same run's files."""
from __future__ import annotations

import datetime
import glob
import json
import os
import sys

LOCK = "run.lock"


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
    """Whether a run has started in ``path``: its config.json is written before any
    training (a run killed before its first checkpoint resumes from the start)."""
    return os.path.isfile(os.path.join(path, "config.json"))


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
    """Create (if needed) and lock the run directory; returns the held ``RunLock``.
    Call it after every other check. If locking fails, a directory this call created
    is removed again. Half-written files of a killed run are cleared."""
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
    for stale in glob.glob(os.path.join(path, "*.tmp-*")):
        os.remove(stale)
    return lock
