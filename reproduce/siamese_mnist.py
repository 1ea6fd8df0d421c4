"""Train the Siamese network on MNIST and build the neighbour tables (spec section 2).

    python reproduce/siamese_mnist.py [--data DIR] [--weights pretrained/mnist_ae.h5|none]
        [--epochs 300] [--out-weights pretrained/mnist_siamese.h5]
        [--out-table pretrained/mnist_neighbors.npz] [--precision float32|mixed_bfloat16]
        [--seed 0] [--subset N] [--set NAME=VALUE ...] [--resume]

Steps: load MNIST (train then test, 70000 images); exact raw-pixel 2 nearest
neighbours (``graph.knn``; cached next to the weights as ``OUT.pairs.npz``);
pairs (2 positives per sample, 2 seeded random permutations as negatives);
Siamese training from encoder1..encoder4 of ``--weights`` (``none``: PyTorch
default init; the original's unused fallback was Xavier-normal kernels) with a checkpoint (``OUT.ckpt.h5``, atomic) after every epoch;
embeddings of all samples, K-means ACC/NMI on them; the 100 nearest in the
embedding and both tables, "random_top100" (the original, Q1, written to
``--out-table``) and "nearest" (written next to it as ``*_nearest.npz``), with the
neighbour purity of the ``num_neighbors`` training columns of both stored in
each. ``--resume`` continues from the checkpoint (weights, Adam state, epoch) and
yields the same result as an uninterrupted run; ``--epochs`` is the total.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dgg_tf.config import DGGConfig  # noqa: E402
from dgg_tf.files import write_bytes_atomic  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="MNIST directory/npz/pkl.gz (default: Keras cache)")
    p.add_argument("--weights", default="pretrained/mnist_ae.h5",
                   help="initial weights holding encoder1..encoder4, or 'none' for PyTorch-default init")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default: config, 300)")
    p.add_argument("--out-weights", default="pretrained/mnist_siamese.h5")
    p.add_argument("--out-table", default="pretrained/mnist_neighbors.npz")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=None, help="use the first N samples")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    args = p.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # diverged training: not a usage error
        print(f"error: {e}", file=sys.stderr)
        return 1


def nearest_path(table_path):
    stem, ext = os.path.splitext(table_path)
    return f"{stem}_nearest{ext or '.npz'}"


def run(args):
    import numpy as np

    from dgg_tf.data import load_mnist
    from dgg_tf.graph import knn
    from dgg_tf.metrics import kmeans_scores
    from dgg_tf.siamese import (SiameseNet, embed, load_checkpoint, make_pairs, neighbor_purity,
                                neighbor_table, save_checkpoint, save_table, train_siamese)
    from dgg_tf.weights import save_weights_h5, set_params

    config = DGGConfig(precision=args.precision).with_assignments(args.set)
    epochs = config.siamese_epochs if args.epochs is None else args.epochs
    if epochs < 0:
        raise ValueError(f"--epochs must be non-negative, got {epochs}")
    if args.subset is not None and args.subset < config.table_top + 1:
        raise ValueError(f"--subset must be at least table_top + 1 = {config.table_top + 1}")
    ckpt = args.out_weights + ".ckpt.h5"
    pairs_cache = args.out_weights + ".pairs.npz"
    if os.path.exists(args.out_weights) and not args.resume:
        raise ValueError(f"{args.out_weights} exists; remove it or pass --resume")
    for out in (args.out_weights, args.out_table):
        directory = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(directory):
            raise ValueError(f"output directory {directory} does not exist")

    # ---- initial weights (checked before the data: fail fast) ----------------------
    init_params, init_desc = None, "PyTorch-default init (--weights none)"
    if args.weights.lower() != "none":
        if not os.path.exists(args.weights):
            raise ValueError(f"initial weights {args.weights} do not exist; pretrain them with "
                             "reproduce/pretrain_mnist.py or pass --weights none")
        init_params = _load_weights(args.weights, config)
        init_desc = args.weights

    t0 = time.time()
    x, y = load_mnist(args.data)
    if args.subset:
        x, y = x[:args.subset], y[:args.subset]
    data_desc = (f"MNIST train+test from {args.data or 'Keras cache'}, "
                 f"{len(x)} images" + (f" (first {args.subset})" if args.subset else ""))
    print(f"data: {data_desc}", flush=True)
    fingerprint = _fingerprint(x)

    # ---- resume ------------------------------------------------------------------
    state = None
    if args.resume and os.path.exists(ckpt):
        state, prov = load_checkpoint(ckpt)
        for key, mine in (("seed", args.seed), ("precision", config.precision),
                          ("data_fingerprint", fingerprint)):
            if prov.get(key) != mine:
                raise ValueError(f"checkpoint {ckpt} was made with {key}={prov.get(key)!r}, this "
                                 f"run has {mine!r}; remove it or rerun with the same settings")
        print(f"resuming from {ckpt}: {state['epoch']} epoch(s) done", flush=True)
    elif args.resume:
        print(f"--resume: no checkpoint {ckpt} yet, starting from the beginning", flush=True)

    # ---- pairs: exact raw-pixel 2 nearest neighbours ---------------------------------
    nn2 = None
    if os.path.exists(pairs_cache):
        with np.load(pairs_cache, allow_pickle=False) as d:
            if str(d["fingerprint"]) == fingerprint and d["knn"].shape == (len(x), 3):
                nn2 = d["knn"]
                print(f"raw-pixel 2-NN from cache {pairs_cache}", flush=True)
    knn_seconds = None
    if nn2 is None:
        t = time.time()
        nn2 = knn(x, config.siamese_positives)
        knn_seconds = round(time.time() - t, 1)
        print(f"raw-pixel {config.siamese_positives}-NN of {len(x)} images: {knn_seconds} s", flush=True)
        write_bytes_atomic(pairs_cache, lambda f: np.savez(
            f, knn=nn2.astype(np.int32), fingerprint=np.array(fingerprint)))
    pairs = make_pairs(x, args.seed, knn_indices=nn2, n_positives=config.siamese_positives)
    print(f"pairs: {len(pairs[0])} ({int(pairs[2].sum())} positive)", flush=True)

    command = "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:])

    def provenance(state, extra=None):
        return {"command": command, "seed": args.seed, "precision": config.precision,
                "data": data_desc, "data_fingerprint": fingerprint, "init_weights": init_desc,
                "epochs_requested": epochs, "epochs_run": int(state["epoch"]),
                "config": config.to_dict(), "wall_seconds": round(time.time() - t0, 1),
                **(extra or {})}

    def on_epoch(state, net):
        save_checkpoint(ckpt, state, provenance(state))

    params, state = train_siamese(x, config, init_params=init_params, seed=args.seed,
                                  epochs=epochs, on_epoch=on_epoch, state=state, pairs=pairs,
                                  verbose=args.verbose)

    # ---- evaluation and tables -----------------------------------------------------------
    net = SiameseNet(config)
    set_params(net, params)
    z = embed(net, x)
    _, metrics = kmeans_scores(z, y, config.n_clusters, config.kmeans_n_init,
                               config.kmeans_random_state)
    print(f"K-means(n_init={config.kmeans_n_init}) on the Siamese embedding: "
          f"ACC={metrics['kmeans_acc']:.4f} NMI={metrics['kmeans_nmi']:.4f}", flush=True)
    t = time.time()
    top = knn(z, config.table_top)
    print(f"{config.table_top}-NN in the embedding: {time.time() - t:.1f} s", flush=True)
    tables = {mode: neighbor_table(z, config, seed=args.seed, knn_indices=top, mode=mode)
              for mode in ("random_top100", "nearest")}
    purity = {mode: neighbor_purity(t, y, config.num_neighbors) for mode, t in tables.items()}
    for mode, value in purity.items():
        print(f"neighbour purity ({mode}, {config.num_neighbors} training neighbours): "
              f"{value:.4f}", flush=True)
    metrics.update({f"purity_{mode}": value for mode, value in purity.items()})
    metrics["purity_num_neighbors"] = config.num_neighbors
    if knn_seconds is not None:
        metrics["raw_knn_seconds"] = knn_seconds

    final = provenance(state, {"metrics": metrics, "history": state["history"]})
    paths = {"random_top100": args.out_table, "nearest": nearest_path(args.out_table)}
    for mode, table in tables.items():
        save_table(paths[mode], table, neighbor_selection=mode, table_top=config.table_top,
                   table_columns=config.table_columns, num_neighbors=config.num_neighbors,
                   seed=args.seed, purity=purity, metrics=metrics,
                   siamese_weights=args.out_weights, provenance=final)
        print(f"wrote {paths[mode]} ({mode}, shape {table.shape})", flush=True)
    save_weights_h5(args.out_weights, params, final)
    print(f"wrote {args.out_weights} ({time.time() - t0:.0f} s)", flush=True)
    return 0


def _load_weights(path, config):
    """Encoder weights via ``dgg_tf.weights.load_any`` (our format, VaDE's Keras-1 file,
    or the original's text export)."""
    from dgg_tf.weights import load_any
    params, _ = load_any(path, config)
    needed = [f"encoder{i + 1}/{w}" for i in range(len(config.encoder_dims) + 1) for w in ("W", "b")]
    missing = [name for name in needed if name not in params]
    if missing:
        raise ValueError(f"initial weights {path} lack {', '.join(missing)}; the Siamese net "
                         "starts from the autoencoder's encoder1..encoder4")
    return {name: params[name] for name in needed}


def _fingerprint(x):
    """A short content hash of the training data (cache and checkpoint checks)."""
    import hashlib

    import numpy as np
    h = hashlib.sha256()
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:16]


if __name__ == "__main__":
    sys.exit(main())
