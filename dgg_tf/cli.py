"""What the reproduce/ commands share: where the repository and the shared MNIST are,
quiet TensorFlow start-up, and one exit path for user errors (code 2, one message)."""
from __future__ import annotations

import contextlib
import os
import sys

from .data import SHARED_MNIST  # noqa: F401  (re-exported: the scripts' default)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the shipped MNIST files (pretrained/README.md says how each was made)
MNIST_WEIGHTS = os.path.join(REPO, "pretrained", "mnist_ae.h5")
MNIST_NEIGHBORS = os.path.join(REPO, "pretrained", "mnist_neighbors.npz")
MNIST_SIAMESE = os.path.join(REPO, "pretrained", "mnist_siamese.h5")


def mnist_source(path=None):
    """Where the commands read MNIST: ``path`` (--data) if given, else ``$DGG_DATA`` if
    set, else the shared idx directory when it exists, else None (``load_mnist`` then
    tries the Keras cache and a download, and names every place looked at if both fail)."""
    if path is not None:
        return path
    if os.environ.get("DGG_DATA"):
        return os.environ["DGG_DATA"]
    return SHARED_MNIST if os.path.isdir(SHARED_MNIST) else None


class UsageError(ValueError):
    """A command-line mistake (exit code 2)."""


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
        import tensorflow as tf
        tf.config.list_physical_devices()


def start_tensorflow_quietly():
    """For the estimator: start TensorFlow, if nobody has, without its C++ start-up lines
    (CUDA probing, oneDNN notices) unless the user set ``TF_CPP_MIN_LOG_LEVEL``; the
    environment is left as it was (TensorFlow reads the level once, at start-up)."""
    if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
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
    import logging
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same orderly stop as Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def run_main(body, run_dir=None):
    """Run a command's body: user errors print one ``error:`` line and return 2. Ctrl-C
    and SIGTERM stop the same way (exit 130 and 143): the ``finally`` blocks run, so the
    run directory's lock is released and its last epoch's checkpoint kept, and the
    message names the run to resume (``run_dir``: the folder, or a function giving it)."""
    import signal

    from .train.callbacks import TrainingError
    from .rundir import RunDirError
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:          # not the main thread: leave SIGTERM as it is
        previous = None
    try:
        return body()
    except (ValueError, OSError, TrainingError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        where = run_dir() if callable(run_dir) else run_dir
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        resume = f"--resume --out {where}" if where else "--resume --out RUN_DIR"
        print(f"\n{how}; continue with the same command plus {resume}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
