"""What the commands (reproduce/ scripts, ``python -m dgg_tf.sweep``) share: where the
repository, its shipped files and MNIST are, and one exit path for user errors (code
2, one message), Ctrl-C and SIGTERM. TensorFlow-free at import, so that a command can
start TensorFlow quietly (``quiet_tensorflow``, from ``backend.startup``) before anything
loads it."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from dgg_tf.backend.startup import (BACKENDS, keras_backend,  # noqa: F401  (for the scripts)
                                    quiet_tensorflow, select_backend)
from dgg_tf.core import stopping
from dgg_tf.core.data import REPO, SHARED_MNIST  # noqa: F401  (re-exported: the scripts' default)
from dgg_tf.core.errors import TrainingError
from dgg_tf.core.rundir import RunDirError
from dgg_tf.core.stopping import Terminated

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


#: What --data takes and where the commands look without it (``mnist_source``, then
#: ``core.data.load_mnist``), for every script's help.
DATA_HELP = ("MNIST: a directory of the four idx files, a Keras mnist.npz or VaDE's "
             "mnist.pkl.gz. Default: the first of $DGG_DATA, ../shared/data/mnist beside "
             "the checkout, the Keras cache ($KERAS_HOME or ~/.keras, datasets/mnist.npz), "
             "a download into that cache")

#: What --weights takes, for every script's help (``core.weight_files.load_any``).
WEIGHTS_KINDS = ("a dgg_tf .h5, VaDE's ae_mnist_weights.h5 or DGG's pretrained_weight/ "
                 "folder (the format is read from the file)")


class CommandParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``error: ...``, and exit code 2, as the
    commands' other user errors are. The scripts parse (and refuse) their arguments
    with it before anything imports Keras, TensorFlow or JAX."""

    def error(self, message):
        self.exit(2, f"error: {message} (see python {self.prog} --help)\n")


def integer(minimum):
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = integer(1)
non_negative_int = integer(0)


def add_subset_argument(parser, more=""):
    """``--subset N``, the same in every script: the first N training images (N >= 1;
    absent: all of them)."""
    parser.add_argument("--subset", type=positive_int, default=None, metavar="N",
                        help="use the first N images, N >= 1 (default: all)" + more)


def add_data_argument(parser):
    """``--data PATH`` with its default and search order."""
    parser.add_argument("--data", default=None, metavar="PATH", help=DATA_HELP)


def add_weights_argument(parser):
    """``--weights PATH``: the pretrained autoencoder, by default the shipped one."""
    parser.add_argument("--weights", default=MNIST_WEIGHTS, metavar="PATH",
                        help=f"autoencoder weights: {WEIGHTS_KINDS} (default: the shipped "
                             "pretrained/mnist_ae.h5 of this checkout; nothing is searched)")


def add_backend_argument(parser):
    """``--backend tensorflow|jax``: the Keras backend (default: $KERAS_BACKEND, else
    Keras' own default, TensorFlow)."""
    parser.add_argument("--backend", choices=sorted(BACKENDS), default=None,
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")


class UsageError(ValueError):
    """A command-line mistake (exit code 2)."""


def _install_stop_handlers():
    """Route SIGTERM, and Ctrl-C while Python's own handler has it (not when ignored, as
    in a background job), to ``stopping.on_signal``; returns {signal: the handler to
    restore}. Outside the main thread nothing is installed."""
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        if signum == signal.SIGINT and signal.getsignal(signum) is not signal.default_int_handler:
            continue
        try:
            previous[signum] = signal.signal(signum, stopping.on_signal)
        except ValueError:          # not the main thread: leave the signals as they are
            break
    return previous


def run_main(body, run_dir=None, resume_hint=None):
    """Run a command's body: user errors print one ``error:`` line and return 2. Ctrl-C
    and SIGTERM stop the same way (exit 130 and 143): the ``finally`` blocks run, so the
    run directory's lock is released and its last epoch's checkpoint kept, and the
    message names the run to resume (``run_dir``: the folder, or a function giving it),
    or says ``resume_hint`` instead (a sweep's subprocess: the sweep's command resumes it).
    A stop is also recorded (``stopping``), so that training raises it again before the
    next batch if Python lost the handler's raise; a SIGTERM repeated at once is the
    same stop and does not interrupt its clean-up."""
    previous = _install_stop_handlers()
    try:
        return body()
    except (ValueError, OSError, TrainingError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        where = run_dir() if callable(run_dir) else run_dir
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        resume = f"--resume --out {where}" if where else "--resume --out RUN_DIR"
        hint = resume_hint or f"continue with the same command plus {resume}"
        print(f"\n{how}; {hint}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stopping.clear()
