"""Reproduce DGG on MNIST, end to end, and write the discrepancy report.

    python reproduce/mnist.py --variant code|paper [--epochs 300] [--out DIR] [--resume]
        [--set NAME=VALUE ...] [--subset N] [--strategy mirrored] [--tensorboard DIR]
        [--backend tensorflow|jax]

Argument parsing and one call, ``dgg_tf.cli.mnist.run_mnist``: it loads MNIST (train
then test, 70000 images), the autoencoder weights and the neighbour table (the shipped
ones by default), then runs ``dgg_tf.pipeline.run_dgg``: GMM init, classifier
pretraining, the discrepancy audit, DGG training (a checkpoint after every epoch;
``--resume`` continues it exactly) and the outputs in --out (default
runs/mnist-<variant>-<timestamp>/): config.json, history.csv, model.h5,
predictions.npy, curves.png, report.md, report.json.

--subset N takes the first N samples and rebuilds the neighbour table inside them as
the original builds it: the shipped Siamese network's embedding, its exact 100 nearest,
20 of them drawn at random (--subset-neighbors raw: exact kNN on the raw pixels), unless
--neighbors names a table with N rows.
What the original code does, each quirk Q1..Q12 and its switch: docs/quirks.md.
User errors (missing data, wrong weights, a table for another N, a bad --set, a busy
or unwritable --out, a diverging loss) end with exit code 2 and one message.
"""
from __future__ import annotations

import argparse
import sys

from dgg_tf.cli.commands import (MNIST_NEIGHBORS, MNIST_SIAMESE, MNIST_WEIGHTS, CommandParser,
                                 add_backend_argument, add_data_argument, add_subset_argument,
                                 add_weights_argument, non_negative_int, positive_int,
                                 quiet_tensorflow, run_main, select_backend)
from dgg_tf.cli.mnist import make_config, run_mnist

DEFAULT_WEIGHTS, DEFAULT_NEIGHBORS, DEFAULT_SIAMESE = MNIST_WEIGHTS, MNIST_NEIGHBORS, MNIST_SIAMESE


def build_parser():
    p = CommandParser(prog="reproduce/mnist.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--variant", choices=["code", "paper"], default="code",
        help="config preset: the original code (default) or the paper-correct switches")
    add("--epochs", type=positive_int, default=None, help="total DGG epochs (default 300)")
    add_data_argument(p)
    add_weights_argument(p)
    add("--neighbors", default=None, metavar="PATH",
        help="neighbour table .npz with one row per image (default: the shipped "
             "pretrained/mnist_neighbors.npz; with --subset, rebuilt inside the subset)")
    add("--out", default=None, help="run directory (default runs/mnist-<variant>-<time>)")
    add("--seed", type=non_negative_int, default=0,
        help="config.seed (shuffling, noise, f2 init; default 0)")
    add_subset_argument(p, "; the neighbours are rebuilt inside the subset")
    add("--subset-neighbors", choices=["siamese", "raw"], default="siamese",
        help="neighbours inside a subset: the shipped Siamese embedding (as the original "
             "builds them) or exact kNN on the raw pixels")
    add("--siamese", default=DEFAULT_SIAMESE, metavar="PATH",
        help="Siamese weights for --subset (default: the shipped pretrained/mnist_siamese.h5)")
    add("--set", action="append", default=[], metavar="NAME=VALUE",
        help="override a config value (repeatable)")
    add("--resume", action="store_true",
        help="continue the run in --out (refused if --out holds no run)")
    add("--resume-or-start", action="store_true",
        help="continue the run in --out, or start it there if there is none yet")
    add("--drop-checkpoint", action="store_true",
        help="delete the finished run's checkpoint.npz (about 40 MB for MNIST; it is "
             "what extends a run with more epochs); model.h5 stays")
    add("--audit-only", action="store_true", help="stop after the discrepancy audit")
    add("--audit-batches", type=positive_int, default=10,
        help="batches for the audit (default 10)")
    add("--audit-classifier-epochs", type=positive_int, default=None,
        help="epochs of the audit's classifier pretraining with the other loss (Q5)")
    add("--strategy", choices=["default", "mirrored"], default="default",
        help="mirrored: tf.distribute.MirroredStrategy over every GPU (or virtual CPU)")
    add("--virtual-cpus", type=positive_int, default=None, metavar="N",
        help="split the CPU into N devices (for --strategy mirrored without GPUs)")
    add("--steps-per-execution", type=positive_int, default=1, metavar="N",
        help="training steps per call (default 1; must divide an epoch's steps)")
    add("--tensorboard", default=None, metavar="DIR", help="write TensorBoard logs to DIR")
    add("--probe-steps", type=_steps, default=(1,), metavar="S,S,...",
        help="steps of the first epoch after which to record the full-pass ACC (default 1)")
    add("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    add("--verbose", type=int, default=1, choices=[0, 1, 2],
        help="1: a line per stage and a bar per epoch (default); 2: a line per epoch; "
             "0: nothing")
    add_backend_argument(p)
    return p


def _steps(text):
    """'1,2,5' -> (1, 2, 5) for --probe-steps."""
    try:
        return tuple(positive_int(v) for v in text.split(",") if v.strip())
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expects steps >= 1 separated by commas, got {text!r}") from None


def main(argv=None, callbacks=()):
    args = build_parser().parse_args(argv)
    if select_backend(args.backend):
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if run_main(lambda: make_config(args) and 0):      # --set and the rest, before Keras
        return 2
    quiet_tensorflow(args.tf_log)
    return run_main(lambda: run_mnist(args, callbacks=callbacks), run_dir=lambda: args.out)


if __name__ == "__main__":
    sys.exit(main())
