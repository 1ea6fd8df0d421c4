"""What the reproduce/ commands share: where the repository and the shared MNIST are,
quiet TensorFlow start-up, and one exit path for user errors (code 2, one message)."""
from __future__ import annotations

import contextlib
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mnist"))
# the shipped MNIST files (pretrained/README.md says how each was made)
MNIST_WEIGHTS = os.path.join(REPO, "pretrained", "mnist_ae.h5")
MNIST_NEIGHBORS = os.path.join(REPO, "pretrained", "mnist_neighbors.npz")
MNIST_SIAMESE = os.path.join(REPO, "pretrained", "mnist_siamese.h5")


def mnist_source(path=None):
    """Where the commands read MNIST: ``path`` if given, else the shared idx directory
    when it exists, else None (``load_mnist`` then tries the Keras cache)."""
    if path is not None:
        return path
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


def run_main(body):
    """Run a command's body: user errors print one ``error:`` line and return 2."""
    from .fitting import TrainingError
    from .rundir import RunDirError
    try:
        return body()
    except (ValueError, OSError, TrainingError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with the same command plus --resume --out RUN_DIR",
              file=sys.stderr)
        return 130
