"""Train the Siamese network on MNIST and build the neighbour tables (docs/quirks.md, section 2).

    python reproduce/siamese_mnist.py [--data DIR] [--weights pretrained/mnist_ae.h5|none]
        [--epochs 300] [--out-weights pretrained/mnist_siamese.h5]
        [--out-table pretrained/mnist_neighbors.npz] [--precision float32|mixed_bfloat16]
        [--seed 0] [--subset N] [--set NAME=VALUE ...] [--resume]

Steps (``dgg_tf.siamese.build_neighbors``): load MNIST (train then test, 70000
images); exact raw-pixel 2 nearest neighbours (``knn.knn``; cached next to the
weights as ``OUT.pairs.npz``); pairs (2 positives per sample, 2 seeded random
permutations as negatives); Siamese training from encoder1..encoder4 of
``--weights`` (``none``: PyTorch default init; the original's unused fallback was
Xavier-normal kernels) through Keras ``fit``, with a checkpoint (``OUT.ckpt.npz``,
atomic) after every epoch; embeddings of all samples, K-means ACC/NMI on them; the
100 nearest in the embedding and both tables, "random_top100" (the original, Q1,
written to ``--out-table``) and "nearest" (written next to it as
``*_nearest.npz``), with the neighbour purity of the ``num_neighbors`` training
columns of both stored in each. ``--resume`` continues from the checkpoint
(weights, Adam state, epoch) and yields the same result as an uninterrupted run;
``--epochs`` is the total.
"""
from __future__ import annotations

import argparse
import os
import sys

from dgg_tf.cli.commands import (MNIST_WEIGHTS, WEIGHTS_KINDS, CommandParser,
                                 add_backend_argument, add_data_argument, add_subset_argument,
                                 mnist_source, non_negative_int, quiet_tensorflow, run_main,
                                 select_backend)
from dgg_tf.core.config import CHOICES, DGGConfig


def main(argv=None):
    p = CommandParser(prog="reproduce/siamese_mnist.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(p)
    p.add_argument("--weights", default=MNIST_WEIGHTS, metavar="PATH",
                   help=f"initial weights holding encoder1..encoder4: {WEIGHTS_KINDS}; or "
                        "'none' for PyTorch-default init (default: the shipped "
                        "pretrained/mnist_ae.h5 of this checkout; nothing is searched)")
    p.add_argument("--epochs", type=non_negative_int, default=None,
                   help="total epochs (default: the config's, 300)")
    p.add_argument("--out-weights", default="pretrained/mnist_siamese.h5",
                   help="Siamese weights to write (default pretrained/mnist_siamese.h5, "
                        "relative to the working directory)")
    p.add_argument("--out-table", default="pretrained/mnist_neighbors.npz",
                   help="neighbour table to write (default pretrained/mnist_neighbors.npz, "
                        "relative to the working directory; *_nearest.npz beside it)")
    p.add_argument("--precision", choices=CHOICES["precision"], default=DGGConfig.precision,
                   help=f"default {DGGConfig.precision}")
    p.add_argument("--seed", type=non_negative_int, default=0, help="default 0")
    add_subset_argument(p, " (at least 101: the 100 nearest)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint (same result as an uninterrupted run)")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                   help="1: a bar per epoch (default); 2: a line per epoch; 0: nothing")
    p.add_argument("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    argv = sys.argv[1:] if argv is None else list(argv)
    add_backend_argument(p)
    args = p.parse_args(argv)
    if select_backend(args.backend):
        return 2
    if run_main(lambda: make_config(args) and 0):      # a bad --set, before Keras
        return 2
    quiet_tensorflow(args.tf_log)
    return run_main(lambda: run(args, argv))


def make_config(args):
    return DGGConfig(precision=args.precision).with_assignments(args.set)


def run(args, argv):
    from dgg_tf.core.data import load_mnist
    from dgg_tf.stages.siamese import build_neighbors, check_neighbor_files

    config = make_config(args)
    outputs = {"weights": args.weights, "out_weights": args.out_weights,
               "out_table": args.out_table, "resume": args.resume, "epochs": args.epochs}
    check_neighbor_files(config, n_samples=args.subset or None, **outputs)
    x, y = load_mnist(mnist_source(args.data))
    if args.subset:
        x, y = x[:args.subset], y[:args.subset]
    data = (f"MNIST train+test from {mnist_source(args.data) or 'Keras cache'}, {len(x)} images"
            + (f" (first {args.subset})" if args.subset else ""))
    print(f"data: {data}", flush=True)
    command = "python " + " ".join([os.path.relpath(__file__)] + argv)
    build_neighbors(config, x, labels=y, seed=args.seed, verbose=args.verbose,
                    provenance={"command": command, "data": data}, **outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
