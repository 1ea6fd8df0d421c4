"""What long work prints, and what it keeps quiet: a line when a stage starts and one
with its duration when it ends, durations in the unit a reader wants (s, min, h),
numbers and differences as text (None as 'n/a'), and
TensorFlow started without its C++ start-up lines. Used by the pipeline, the estimator,
the sweep and the commands, so every entrance reads the same. Loads no TensorFlow at
import: quieting it must come before it starts."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time


def say(verbose, msg):
    """Print ``msg`` (flushed) unless ``verbose`` is 0."""
    if verbose:
        print(msg, flush=True)


def number(v, digits=4):
    """``v`` with ``digits`` decimals, or 'n/a' for a value not there (None)."""
    return "n/a" if v is None else f"{v:.{digits}f}"


def signed(v, digits=4):
    """``number`` with its sign always shown (a difference)."""
    return "n/a" if v is None else f"{v:+.{digits}f}"


def duration(seconds):
    """``seconds`` as '12.3 s', '14 min' or '2.5 h'."""
    return (f"{seconds / 3600:.1f} h" if seconds > 5400 else
            f"{seconds / 60:.0f} min" if seconds > 90 else f"{seconds:.1f} s")


@contextlib.contextmanager
def stage(verbose, name):
    """Print one line when the stage ``name`` starts and one with its duration when it
    ends, so that no stage of a long run is silent."""
    say(verbose, f"{name}: started")
    t0 = time.time()
    yield
    say(verbose, f"{name}: done in {duration(time.time() - t0)}")


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow(show=False):
    """Start TensorFlow without its C++ start-up log lines (oneDNN, CUDA probing), which
    it writes before honouring TF_CPP_MIN_LOG_LEVEL; later ones are filtered by that
    variable. For the scripts only: ``import dgg_tf`` changes no environment variable.
    ``show=True`` (--tf-log) leaves everything as TensorFlow has it."""
    if show:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_to_devnull():
        import keras  # lazy: keras starts its backend on import: here, quietly
        if keras.backend.backend() != "tensorflow":
            return
        import tensorflow as tf  # lazy: the point is to start it here, quietly
        tf.config.list_physical_devices()


def start_tensorflow_quietly():
    """For the estimator: start TensorFlow, if nobody has, without its C++ start-up lines
    (CUDA probing, oneDNN notices) unless the user set ``TF_CPP_MIN_LOG_LEVEL``; the
    environment is left as it was (TensorFlow reads the level once, at start-up)."""
    if "keras" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        quiet_tensorflow()
    finally:
        del os.environ["TF_CPP_MIN_LOG_LEVEL"]


@contextlib.contextmanager
def retracing_notices_off():
    """Silence TensorFlow's Python WARNINGs (its "N calls triggered tf.function
    retracing" notices) for a block: every stage of a fit builds and calls its own Keras
    functions, so the notices are expected there and mean nothing to the user. Errors
    still show; the logger's level is restored after."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
