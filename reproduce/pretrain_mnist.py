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

from dgg_tf.cli.commands import (add_backend_argument, mnist_source, quiet_tensorflow, run_main,
                                 select_backend)
from dgg_tf.core.config import CHOICES, DGGConfig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="pretrained/mnist_ae.h5")
    p.add_argument("--data", default=None, help="MNIST: idx directory, mnist.npz or mnist.pkl.gz "
                   "(default: ../shared/data/mnist if present, else the Keras cache)")
    p.add_argument("--schedule", choices=CHOICES["pretrain_schedule"],
                   default=DGGConfig.pretrain_schedule)
    p.add_argument("--precision", choices=CHOICES["precision"], default=DGGConfig.precision)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=None, help="use the first N samples")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", default=None, help="start from these autoencoder weights")
    p.add_argument("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    argv = sys.argv[1:] if argv is None else list(argv)
    add_backend_argument(p)
    args = p.parse_args(argv)
    if select_backend(args.backend):
        return 2
    quiet_tensorflow(args.tf_log)
    return run_main(lambda: run(args, argv))


def run(args, argv):
    from dgg_tf.core.data import load_mnist
    from dgg_tf.stages.pretrain import check_pretrain_files, pretrain_to_file

    config = DGGConfig(pretrain_schedule=args.schedule, precision=args.precision)
    config = config.with_assignments(args.set)
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
