"""How a command is asked to stop, kept where training can see it. Standard library
only (no TensorFlow at import): a sweep's cell calls ``watch_parent`` before it
imports anything heavy.

Python runs a signal handler in the main thread between two bytecodes, wherever they
are, also inside a garbage-collector or weakref callback or a ``__del__``; an exception
raised there is only printed ("Exception ignored in ...") and the program goes on. JAX
runs such callbacks all the time (``_xla_gc_callback`` at every collection, its tracing
caches' weakrefs), so a SIGTERM handler that only raises can be lost and the run trains
on: what kept cells of a stopped sweep training. ``on_signal`` therefore also records
the stop (``asked``), and ``train.callbacks.StopWhenAsked`` raises it again before the
next batch.

A sweep's cell must not outlive its sweep (``watch_parent``): on Linux the kernel sends
it SIGTERM when the sweep dies (even by SIGKILL), and ``asked`` also reports a stop
once the sweep is gone, on every OS.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

#: The environment variable in which a sweep gives its cells its PID (``watch_parent``).
PARENT_ENV = "DGG_SWEEP_PARENT"

#: A SIGTERM repeated within this many seconds is the same stop delivered twice
#: (``timeout`` signals its command and then the command's process group), not a
#: second stop: raising it again could break the first stop's clean-up.
REPEAT_SECONDS = 2.0

_PR_SET_PDEATHSIG = 1          # linux/prctl.h

_state = {"signal": None, "at": None, "parent": None}


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same orderly stop as Ctrl-C."""


def exception(signum):
    """The exception a stop by ``signum`` raises: ``Terminated`` for SIGTERM,
    ``KeyboardInterrupt`` otherwise (Ctrl-C)."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def record(signum):
    """Record a stop asked by ``signum``; returns whether it is a new stop (False for a
    SIGTERM that repeats the last one within ``REPEAT_SECONDS``)."""
    now = time.monotonic()
    if (signum == signal.SIGTERM and _state["signal"] == signal.SIGTERM
            and now - _state["at"] < REPEAT_SECONDS):
        return False
    _state.update(signal=signum, at=now)
    return True


def on_signal(signum, frame):
    """The stop signals' handler (``commands.run_main``): record the stop, and raise it
    unless it repeats the last one."""
    if record(signum):
        raise exception(signum)


def asked():
    """The signal number of the stop asked for, or None. A cell whose sweep is gone
    (``watch_parent``) counts as asked to stop by SIGTERM."""
    if _state["signal"] is None and parent_gone():
        record(signal.SIGTERM)
    return _state["signal"]


def clear():
    """Forget the recorded stop (a command's body has returned)."""
    _state.update(signal=None, at=None)


def parent_gone():
    """Whether this process watches a parent (``watch_parent``) that has exited."""
    return _state["parent"] is not None and os.getppid() != _state["parent"]


def watch_parent(pid=None):
    """Make this process stop when its parent ``pid`` (default: ``$DGG_SWEEP_PARENT``,
    set by the sweep; nothing to watch if unset) is gone. On Linux the kernel then
    sends SIGTERM (prctl PR_SET_PDEATHSIG: also when the parent is SIGKILLed; it fires
    when the thread that started this process exits, the sweep's main thread); on
    every OS ``asked`` reports the stop, which training checks as each batch begins.
    Returns False if the parent is already gone (it died before the kernel was asked)."""
    pid = pid if pid is not None else os.environ.get(PARENT_ENV)
    if not pid:
        return True
    _state["parent"] = int(pid)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM),
                                                     0, 0, 0)
        except (OSError, AttributeError):     # no prctl: asked() still sees the parent go
            pass
    return not parent_gone()
