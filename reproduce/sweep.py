"""A grid of named DGG configurations x seeds on MNIST, each cell an ordinary run
directory (no audit) under one sweep directory; then sweep.json, sweep.md, sweep.png.

    python reproduce/sweep.py --protocol cpu|converge|full|tiny [--out DIR] [--jobs N]
        [--cells-per-program N [--checkpoint-every N]]
        [--configs code,paper,...] [--subset N] [--epochs E] [--seeds S] [--flip-seeds S]
        [--precision P] [--subset-neighbors siamese|raw] [--set NAME=VALUE ...] [--dry-run]

Configurations: code; paper; code with one switch flipped (dgg_tf.sweep.protocols.FLIPS).
Protocols (dgg_tf.sweep.protocols.PROTOCOLS):
  cpu   the first 10000 MNIST training images, mixed_bfloat16, 15 epochs, 5 seeds for
        code and paper and 3 per flip: 34 cells, about 2.4 h on 2 idle cores;
  converge  the first 5000 images, float32, 100 epochs (5000 steps a cell, past the
        first-step collapse), code and paper x 3 seeds and the diagnostic grid x 2:
        16 cells, about 6 h on 2 idle cores; then --with-best NAME adds 4 more;
  full  all 70000 images with the shipped neighbour table, 300 epochs, 5 seeds, the
        flips and the diagnostic grid (a GPU);
  tiny  1000 images, 1 epoch, 2 seeds (a smoke test).
--subset/--epochs/--seeds/--flip-seeds/--precision override the protocol's sizes.
The same command resumes: finished cells are skipped, killed cells continue from their
last checkpoint. SIGTERM or Ctrl-C stops every running cell at its next batch (each
keeps its last epoch's checkpoint), writes sweep.json/sweep.md of what has finished and
exits with 143 or 130; a second signal kills the cells at once. --dry-run prints the
plan and the estimated time and stops. --cells-per-program N trains up to N seeds of a
configuration together in one process (one vmapped program on JAX), the stages before
DGG training computed once per seed in OUT/starts; each cell is still its own run
directory (docs/usage.md).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from dgg_tf.cli.commands import (MNIST_NEIGHBORS, MNIST_SIAMESE, MNIST_WEIGHTS, CommandParser,
                                 Terminated, UsageError, add_backend_argument, add_data_argument,
                                 add_subset_argument, add_weights_argument, keras_backend,
                                 mnist_source, positive_int, quiet_tensorflow, run_main,
                                 select_backend)
from dgg_tf.core.config import CHOICES

#: What each protocol is, for the message when --protocol is missing.
PROTOCOL_CHOICES = {
    "cpu": "10000 images, 15 epochs, 34 cells, about 2.4 h on 2 cores",
    "converge": "5000 images, 100 epochs, 16 cells, about 6 h on 2 cores",
    "full": "70000 images, 300 epochs, 5 seeds, for a GPU",
    "tiny": "1000 images, 1 epoch, 2 seeds, a smoke test",
}

DEFAULT_WEIGHTS, DEFAULT_NEIGHBORS, DEFAULT_SIAMESE = MNIST_WEIGHTS, MNIST_NEIGHBORS, MNIST_SIAMESE


def build_parser():
    p = CommandParser(prog="reproduce/sweep.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--protocol", choices=list(PROTOCOL_CHOICES), default=None,
        help="required: " + "; ".join(f"{k} ({v})" for k, v in PROTOCOL_CHOICES.items()))
    add("--grid", choices=["flips", "diagnostic", "flips+diagnostic"], default=None,
        help="the configurations besides code and paper: one switch flipped at a time "
             "(FLIPS), the diagnostic grid (DIAGNOSTIC_GRID), or both (default: the "
             "protocol's)")
    add("--with-best", default=None, metavar="NAME",
        help="add paper and nearest neighbours with the fix of this diagnostic "
             "configuration (for example code+cross_entropy+warmup)")
    add("--out", default=None, help="sweep directory (default runs/sweep-<protocol>)")
    add("--jobs", type=positive_int, default=1,
        help="cells run in parallel (subprocesses; default 1)")
    add("--cells-per-program", type=positive_int, default=None, metavar="N",
        help="train up to N cells of one configuration together in one process (one "
             "vmapped program on JAX, one after another on TensorFlow; starts computed "
             "once per seed in OUT/starts); default: one cell a process")
    add("--checkpoint-every", type=positive_int, default=1, metavar="N",
        help="with --cells-per-program: save each cell's checkpoint (weights and optimizer "
             "state, about 40 MB a cell on full MNIST) every N epochs, after the last and "
             "on a stop (history.csv every epoch); a program killed outright redoes at "
             "most N-1 epochs (default 1)")
    add("--configs", default=None, help="comma-separated configuration names (default all)")
    add_subset_argument(p, "; default: the protocol's")
    add("--epochs", type=positive_int, default=None,
        help="DGG epochs of every cell (default: the protocol's)")
    add("--seeds", type=positive_int, default=None,
        help="seeds of code and paper (default: the protocol's)")
    add("--flip-seeds", type=positive_int, default=None,
        help="seeds of each other configuration (default: the protocol's)")
    add("--precision", choices=CHOICES["precision"], default=None,
        help="precision of every cell (default: the protocol's)")
    add("--set", action="append", default=[], metavar="NAME=VALUE",
        help="a config value for every cell (repeatable)")
    add_data_argument(p)
    add_weights_argument(p)
    add("--neighbors", default=DEFAULT_NEIGHBORS, metavar="PATH",
        help="neighbour table of all 70000 images, for protocols without a subset "
             "(default: the shipped pretrained/mnist_neighbors.npz)")
    add("--subset-neighbors", choices=["siamese", "raw"], default="siamese",
        help="neighbours inside a subset: the shipped Siamese embedding (as the original "
             "builds them, default) or exact kNN on the raw pixels")
    add("--siamese-weights", default=DEFAULT_SIAMESE, metavar="PATH",
        help="Siamese network weights for the neighbours inside a subset (default: the "
             "shipped pretrained/mnist_siamese.h5)")
    add("--dry-run", action="store_true", help="print the plan and its estimated time")
    add_backend_argument(p)
    return p


def make_protocol(args):
    """The protocol's sizes with the command line's overrides and --set settings."""
    from dgg_tf.core.config import DGGConfig
    from dgg_tf.sweep.protocols import PROTOCOLS
    protocol = {"name": args.protocol, **PROTOCOLS[args.protocol]}
    for key in ("subset", "epochs", "seeds", "flip_seeds", "precision"):
        value = getattr(args, key)
        if isinstance(value, int) and value < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {value}")
        if value is not None:
            protocol[key] = value
    if args.grid:
        protocol["grid"] = args.grid
    protocol["backend"] = keras_backend()        # the cells inherit it; resume keeps it
    if args.jobs < 1:
        raise UsageError(f"--jobs must be positive, got {args.jobs}")
    if args.checkpoint_every != 1 and args.cells_per_program is None:
        raise UsageError("--checkpoint-every applies to programs of cells: add "
                         "--cells-per-program N (a cell run alone saves every epoch)")
    settings = dict(protocol["settings"])
    extra = DGGConfig().with_assignments(args.set)
    settings.update({k: v for k, v in extra.to_dict().items()
                     if v != DGGConfig().to_dict()[k]})
    protocol["settings"] = settings
    DGGConfig().replace(**{k: tuple(v) if k == "encoder_dims" else v
                           for k, v in settings.items()})
    return protocol


def load_data(args, protocol):
    """x, y, neighbour tables (or the table file) and the data description."""
    import numpy as np

    from dgg_tf.core.config import DGGConfig
    from dgg_tf.core.data import load_mnist
    from dgg_tf.core.tables import load_tables
    from dgg_tf.stages.neighbors import subset_tables
    data = mnist_source(args.data)
    x, y = load_mnist(data)
    config = DGGConfig().replace(**{k: tuple(v) if k == "encoder_dims" else v
                                    for k, v in protocol["settings"].items()})
    info = {"source": os.path.abspath(data) if data else "keras cache"}
    n = protocol["subset"]
    if n:
        if n > len(x):
            raise UsageError(f"--subset {n} exceeds the {len(x)} images")
        x, y = x[:n], y[:n]
        how = args.subset_neighbors
        tables, table_info = subset_tables(x, y, config, how, args.siamese_weights)
        info.update(subset=f"first {n}", neighbors=f"{how}: {table_info['note']}")
    else:
        tables, _, table_info = load_tables(args.neighbors, len(x), config)
        info.update(neighbors=table_info["note"])
    from dgg_tf.core.tables import neighbor_purity
    info["purity"] = neighbor_purity(tables["random_top100"] if "random_top100" in tables
                                     else next(iter(tables.values())), y, config.num_neighbors)
    return np.asarray(x, np.float32), y, tables, info


def run(args):
    from dgg_tf.sweep.cells import PLAN, extend, prepare
    from dgg_tf.sweep.protocols import estimate_seconds, sweep_configs, with_best
    protocol = make_protocol(args)
    names = [n.strip() for n in args.configs.split(",") if n.strip()] if args.configs else None
    configs = sweep_configs(protocol, names)
    if args.with_best:
        try:
            configs.update(with_best(protocol, args.with_best))
        except ValueError as e:
            raise UsageError(str(e)) from None
    out = args.out or os.path.join("runs", f"sweep-{args.protocol}")
    n = protocol["subset"] or 70000
    cells = sum(len(c["seeds"]) for c in configs.values())
    est = estimate_seconds(protocol, configs, n)
    print(f"sweep: {len(configs)} configurations, {cells} cells, {n} images, "
          f"{protocol['epochs']} epochs, {protocol['precision']}; about {est / 3600:.1f} h on "
          f"2 idle cores one cell at a time; out {out}", flush=True)
    if args.dry_run:
        return 0
    quiet_tensorflow()                          # Keras and its backend start here
    from dgg_tf.sweep.run import run_sweep
    if os.path.exists(os.path.join(out, PLAN)):
        extend(out, protocol, configs)        # the same sweep again: resume it
    else:
        if not os.path.exists(args.weights):
            raise UsageError(f"weights {args.weights} do not exist; pass --weights")
        x, y, tables, info = load_data(args, protocol)
        info["command"] = "python reproduce/sweep.py " + shlex.join(args.argv)
        print(f"data: {len(x)} images; neighbours {info['neighbors']}; purity "
              f"{info['purity']:.3f}", flush=True)
        prepare(out, protocol, configs, x, y, tables, args.weights, info)
    try:
        failed = run_sweep(out, jobs=args.jobs, cells_per_program=args.cells_per_program,
                           checkpoint_every=args.checkpoint_every)
    except KeyboardInterrupt as e:    # the cells are stopped; sweep.md says what finished
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"\n{how}; the same command resumes the sweep", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    print(f"wrote {os.path.join(out, 'sweep.json')}, sweep.md, sweep.png", flush=True)
    if failed:
        print(f"error: {failed} cell(s) failed; see {out}/logs; rerun to retry them",
              file=sys.stderr)
        return 2
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.protocol is None:
        parser.error("--protocol is required; choose one of: " + "; ".join(
            f"{k} ({v})" for k, v in PROTOCOL_CHOICES.items()))
    if select_backend(args.backend):
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if run_main(lambda: make_protocol(args) and 0):    # --set and the rest, before Keras
        return 2
    return run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
