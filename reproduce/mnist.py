"""Reproduce DGG on MNIST, end to end, and write the discrepancy report.

    python reproduce/mnist.py --variant code|paper [--epochs 300] [--out DIR] [--resume]
        [--set NAME=VALUE ...] [--subset N] [--strategy mirrored] [--tensorboard DIR]
        [--backend tensorflow|jax]

Loads MNIST (train then test, 70000 images), the autoencoder weights and the neighbour
table (the shipped ones by default), then runs ``dgg_tf.pipeline.run_dgg``: GMM init,
classifier pretraining, the discrepancy audit, DGG training (a checkpoint after every
epoch; ``--resume`` continues it exactly) and the outputs in --out (default
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
import datetime
import os
import shlex
import sys

from dgg_tf.cli.commands import (MNIST_NEIGHBORS, MNIST_SIAMESE, MNIST_WEIGHTS, UsageError,
                                 add_backend_argument, mnist_source, quiet_tensorflow, run_main,
                                 select_backend)

DEFAULT_WEIGHTS, DEFAULT_NEIGHBORS, DEFAULT_SIAMESE = MNIST_WEIGHTS, MNIST_NEIGHBORS, MNIST_SIAMESE


def build_parser():
    p = argparse.ArgumentParser(prog="reproduce/mnist.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--variant", choices=["code", "paper"], default="code",
        help="config preset: the original code (default) or the paper-correct switches")
    add("--epochs", type=int, default=None, help="total DGG epochs (default 300)")
    add("--data", default=None, help="MNIST: idx directory, mnist.npz or mnist.pkl.gz")
    add("--weights", default=DEFAULT_WEIGHTS, help="autoencoder weights")
    add("--neighbors", default=None, help="neighbour table .npz (default: the shipped one)")
    add("--out", default=None, help="run directory (default runs/mnist-<variant>-<time>)")
    add("--seed", type=int, default=0, help="config.seed (shuffling, noise, f2 init)")
    add("--subset", type=int, default=None, help="use the first N samples")
    add("--subset-neighbors", choices=["siamese", "raw"], default="siamese",
        help="neighbours inside a subset: the shipped Siamese embedding (as the original "
             "builds them) or exact kNN on the raw pixels")
    add("--siamese", default=DEFAULT_SIAMESE, help="Siamese weights for --subset")
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
    add("--audit-batches", type=int, default=10, help="batches for the audit (default 10)")
    add("--audit-classifier-epochs", type=int, default=None,
        help="epochs of the audit's classifier pretraining with the other loss (Q5)")
    add("--strategy", choices=["default", "mirrored"], default="default",
        help="mirrored: tf.distribute.MirroredStrategy over every GPU (or virtual CPU)")
    add("--virtual-cpus", type=int, default=None, help="split the CPU into N devices")
    add("--steps-per-execution", type=int, default=1, help="training steps per call")
    add("--tensorboard", default=None, metavar="DIR", help="write TensorBoard logs to DIR")
    add("--probe-steps", type=_steps, default=(1,), metavar="S,S,...",
        help="steps of the first epoch after which to record the full-pass ACC (default 1)")
    add("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    add("--verbose", type=int, default=1, choices=[0, 1, 2])
    add_backend_argument(p)
    return p


def _steps(text):
    """'1,2,5' -> (1, 2, 5) for --probe-steps."""
    return tuple(int(v) for v in text.split(",") if v.strip())


def make_config(args):
    from dgg_tf.core.config import DGGConfig
    for name in ("epochs", "subset", "audit_batches", "steps_per_execution", "virtual_cpus"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    resuming = args.resume or args.resume_or_start
    if resuming and not args.out:
        raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
    if resuming and args.audit_only:
        raise UsageError("--resume and --audit-only do not go together")
    config = DGGConfig.preset(args.variant, seed=args.seed).with_assignments(args.set)
    config = config if args.epochs is None else config.replace(epochs=args.epochs)
    if config.epochs < 1 and not args.audit_only:
        raise UsageError(f"epochs must be at least 1, got {config.epochs} (--audit-only "
                         "measures the report without training)")
    return config



def neighbors_for(args, config, x, y):
    """run_dgg's neighbour table (a file, or tables rebuilt in a subset) and its note."""
    from dgg_tf.core.tables import sibling_path
    from dgg_tf.stages.neighbors import subset_tables
    if args.neighbors:
        return args.neighbors, None           # run_dgg checks that it has N rows
    if args.subset is not None:
        tables, info = subset_tables(x, y, config, args.subset_neighbors, args.siamese)
        print(f"neighbours: {info['note']}", flush=True)
        return tables, info
    if config.neighbor_selection == "random_top100":
        return DEFAULT_NEIGHBORS, None
    return sibling_path(DEFAULT_NEIGHBORS, "random_top100"), None


def run(args, x=None, y=None, callbacks=()):
    """The whole command; ``x``, ``y`` replace loading MNIST (tests)."""
    config = make_config(args)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out = args.out or os.path.join("runs", f"mnist-{args.variant}-{stamp}")
    from dgg_tf.core.rundir import RunDir
    run_dir = RunDir(out)
    run_dir.check(resume=args.resume or args.resume_or_start, must_hold_run=args.resume)
    if not os.path.exists(args.weights):
        raise UsageError(f"weights {args.weights} do not exist; pass --weights or create them "
                         "with reproduce/pretrain_mnist.py")
    from dgg_tf.backend.devices import make_strategy, split_cpu
    split_cpu(args.virtual_cpus)
    from dgg_tf.api.pipeline import run_dgg
    from dgg_tf.core.data import load_mnist
    data = mnist_source(args.data)
    desc = "arrays passed to run()" if x is not None else os.path.abspath(data or "keras cache")
    if x is None:
        x, y = load_mnist(data)
    if args.subset is not None:
        if args.subset > len(x):
            raise UsageError(f"--subset {args.subset} exceeds the {len(x)} samples")
        x, y = x[:args.subset], (None if y is None else y[:args.subset])
    print(f"data: {len(x)} images from {desc}", flush=True)
    info = {"variant": args.variant, "data": desc, "subset": args.subset,
            "audit_only": bool(args.audit_only),
            "command": "python reproduce/mnist.py " + shlex.join(args.argv), "cwd": os.getcwd()}
    neighbors, neighbor_info = neighbors_for(args, config, x, y)
    run_dgg(config, x, y, neighbors=neighbors, neighbor_info=neighbor_info, weights=args.weights,
            workdir=out, resume=args.resume or args.resume_or_start, verbose=args.verbose,
            audit_only=args.audit_only,
            audit_batches=args.audit_batches, strategy=make_strategy(args.strategy),
            audit_classifier_epochs=args.audit_classifier_epochs, info=info,
            steps_per_execution=args.steps_per_execution, tensorboard=args.tensorboard,
            probe_steps=args.probe_steps,
            callbacks=callbacks)
    ckpt = run_dir.checkpoint
    if args.drop_checkpoint and os.path.exists(ckpt):
        os.remove(ckpt)
        print(f"deleted {ckpt} (--drop-checkpoint); model.h5 keeps the trained network",
              flush=True)
    return 0


def main(argv=None, callbacks=()):
    args = build_parser().parse_args(argv)
    if select_backend(args.backend):
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(args.tf_log)
    return run_main(lambda: (make_config(args), run(args, callbacks=callbacks))[1],
                    run_dir=lambda: args.out)


if __name__ == "__main__":
    sys.exit(main())
