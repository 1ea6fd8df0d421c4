"""Pretrain the 784-500-500-2000-10 autoencoder on MNIST and save it in our flat format.

    python reproduce/pretrain_mnist.py --out pretrained/mnist_ae.h5 [--schedule section9|dec]
        [--data DIR] [--precision float32|mixed_bfloat16] [--seed 0] [--subset N]
        [--set NAME=VALUE ...] [--resume] [--init WEIGHTS]

A checkpoint (``OUT.ckpt.npz``) is written after every epoch; ``--resume``
continues from it exactly (same result as an uninterrupted run). At the end the
K-means ACC/NMI of the encoder means are measured and stored with the weights as
provenance. The work is ``dgg_tf.pretrain.pretrain_to_file``.
"""
from __future__ import annotations

import argparse
import os
import sys

from dgg_tf.cli.commands import (WEIGHTS_KINDS, CommandParser, add_backend_argument,
                                 add_data_argument, add_subset_argument, mnist_source,
                                 non_negative_int, quiet_tensorflow, run_main, select_backend)
from dgg_tf.core.config import CHOICES, DGGConfig


def main(argv=None):
    p = CommandParser(prog="reproduce/pretrain_mnist.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="pretrained/mnist_ae.h5",
                   help="weights file to write (default pretrained/mnist_ae.h5, relative "
                        "to the working directory); its checkpoint is OUT.ckpt.npz")
    add_data_argument(p)
    p.add_argument("--schedule", choices=CHOICES["pretrain_schedule"],
                   default=DGGConfig.pretrain_schedule,
                   help=f"pretraining recipe (default {DGGConfig.pretrain_schedule}; "
                        "docs/quirks.md section 9, or DEC's end-to-end schedule)")
    p.add_argument("--precision", choices=CHOICES["precision"], default=DGGConfig.precision,
                   help=f"default {DGGConfig.precision}")
    p.add_argument("--seed", type=non_negative_int, default=0, help="default 0")
    add_subset_argument(p)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT.ckpt.npz (same result as an uninterrupted run)")
    p.add_argument("--init", default=None, metavar="PATH",
                   help=f"start from these autoencoder weights: {WEIGHTS_KINDS} "
                        "(default: PyTorch-default initialisation)")
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
    config = DGGConfig(pretrain_schedule=args.schedule, precision=args.precision)
    return config.with_assignments(args.set)


def run(args, argv):
    from dgg_tf.core.data import load_mnist
    from dgg_tf.stages.pretrain import check_pretrain_files, pretrain_to_file

    config = make_config(args)
    check_pretrain_files(args.out, resume=args.resume, init=args.init, config=config)
    x, y = load_mnist(mnist_source(args.data))
    if args.subset:
        x, y = x[:args.subset], y[:args.subset]
    command = "python " + " ".join([os.path.relpath(__file__)] + argv)
    pretrain_to_file(config, x, args.out, labels=y, seed=args.seed, resume=args.resume,
                     init=args.init, provenance={"command": command,
                                                 "data": f"MNIST train+test, {len(x)} images"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
