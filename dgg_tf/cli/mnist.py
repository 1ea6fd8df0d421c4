"""The MNIST command (``reproduce/mnist.py``) once its arguments are parsed: check them,
build the config, guard the run directory, load MNIST, pick or rebuild the neighbour
table, and run ``dgg_tf.api.pipeline.run_dgg``.

Why a module of its own: the script stays argument parsing and one call, as every
command in ``reproduce/`` is (README, Layout), and a test or another command can run
the very same command from an argparse namespace without a subprocess. TensorFlow-free
at import, as the script must be: it parses (and refuses bad) arguments, picks the Keras
backend and quiets TensorFlow before anything loads Keras; what needs Keras is imported
inside the functions.
"""
from __future__ import annotations

import datetime
import os
import shlex

from ..core.config import DGGConfig
from ..core.data import load_mnist
from ..core.rundir import RunDir
from ..core.tables import sibling_path
from .commands import MNIST_NEIGHBORS, UsageError, mnist_source



#: How to read the ACC after the probed steps, on any machine (printed after the run).
READING_THE_PROBES = (
    "reading the probes: DGG's first Adam step moves every weight by about the learning "
    "rate, so the full-pass ACC first drops below the pretrained classifier's and then "
    "recovers over the epochs. The first steps are chaotic: another CPU's kernels give "
    "another trajectory (measured: 0.27-0.38 after step 1, 0.40-0.65 after one full-MNIST "
    "epoch of the code variant). Compare runs on one machine; docs/results.md has the "
    "figures.")

def make_config(args):
    """The run's ``DGGConfig`` from the parsed arguments (``--variant``, ``--seed``,
    ``--set``, ``--epochs``); raises ``UsageError`` for a value no run can take."""
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
    from ..stages.neighbors import subset_tables  # lazy: Keras (the Siamese embedding of a subset)
    if args.neighbors:
        return args.neighbors, None           # run_dgg checks that it has N rows
    if args.subset is not None:
        tables, info = subset_tables(x, y, config, args.subset_neighbors, args.siamese)
        print(f"neighbours: {info['note']}", flush=True)
        return tables, info
    if config.neighbor_selection == "random_top100":
        return MNIST_NEIGHBORS, None
    return sibling_path(MNIST_NEIGHBORS, "random_top100"), None


def run_mnist(args, x=None, y=None, callbacks=()):
    """Run DGG on MNIST as ``reproduce/mnist.py`` does, from its parsed arguments
    (``args``: the script's argparse namespace; ``args.argv``, the command line as typed,
    goes into config.json). Sets ``args.out`` (default runs/mnist-<variant>-<time>), so
    that a stop can name the run to resume. ``x``, ``y`` replace loading MNIST (tests);
    ``callbacks`` go to DGG training. User errors raise ``UsageError`` (or the
    ``ValueError``/``RunDirError`` of the check that found them), which
    ``cli.commands.run_main`` turns into exit code 2. Returns 0."""
    config = make_config(args)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out = args.out or os.path.join("runs", f"mnist-{args.variant}-{stamp}")
    run_dir = RunDir(out)
    run_dir.check(resume=args.resume or args.resume_or_start, must_hold_run=args.resume)
    if not os.path.exists(args.weights):
        raise UsageError(f"weights {args.weights} do not exist; pass --weights or create them "
                         "with reproduce/pretrain_mnist.py")
    from ..backend.devices import make_strategy, split_cpu  # lazy: Keras, after the checks above
    split_cpu(args.virtual_cpus)
    from ..api.pipeline import run_dgg  # lazy: Keras (the whole pipeline)
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
    if args.probe_steps and args.verbose and not args.audit_only:
        print(READING_THE_PROBES, flush=True)
    ckpt = run_dir.checkpoint
    if args.drop_checkpoint and os.path.exists(ckpt):
        os.remove(ckpt)
        print(f"deleted {ckpt} (--drop-checkpoint); model.h5 keeps the trained network",
              flush=True)
    return 0
