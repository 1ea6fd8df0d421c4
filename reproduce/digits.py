"""DGG on scikit-learn's bundled digits (1797 images of 8 x 8, no download), from
nothing through the estimator: autoencoder pretraining, exact-kNN neighbours, GMM
init, classifier pretraining and DGG, for each seed; beside K-means on the raw pixels
and K-means on the pretrained autoencoder's means.

    python reproduce/digits.py [--config reproduce/configs/digits.json] [--seeds 0 1 2 3 4]
                               [--out reproduce/results/digits]

Writes ``results.json`` ({"dgg"|"kmeans_raw"|"kmeans_ae": {"acc": [...], "nmi": [...]}},
one value per seed) and ``runs.json`` (per-seed details) under ``--out``. Exit 2 on
bad input.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

from dgg_tf.cli.commands import (CommandParser, add_backend_argument, non_negative_int,
                                 select_backend)

HERE = os.path.dirname(os.path.abspath(__file__))


def load_digits01():
    """The digits as float32 in [0, 1] (pixels / 16) and their labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def kmeans(z, y, k, seed):
    """ACC and NMI (arithmetic) of K-means (10 restarts) on ``z``."""
    from sklearn.cluster import KMeans

    from dgg_tf.core.metrics import cluster_acc, nmi
    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(z)
    return cluster_acc(y, pred), nmi(y, pred)


def ae_means(params, config, x):
    """Encoder means of the pretrained autoencoder."""
    from dgg_tf.numerics.models import Autoencoder, encode_mean
    from dgg_tf.numerics.weights import set_params
    ae = Autoencoder(config)
    set_params(ae, params, partial=True)
    return encode_mean(ae, x)


def run_seed(spec, x, y, seed, verbose):
    """One seed: the estimator's fit, then the three methods' ACC and NMI."""
    from dgg_tf import DGG
    from dgg_tf.core.metrics import cluster_acc, nmi
    t = time.time()
    model = DGG(**spec["estimator"], config_overrides=spec.get("config_overrides"),
                random_state=seed, verbose=verbose)
    model.fit(x, y, neighbors=spec.get("neighbors", "knn"))
    pred = model.labels_
    k = model.config_.n_clusters
    out = {"seed": seed, "dgg": (cluster_acc(y, pred), nmi(y, pred)),
           "kmeans_raw": kmeans(x, y, k, seed),
           "kmeans_ae": kmeans(ae_means(model.autoencoder_, model.config_, x), y, k, seed),
           "seconds": round(time.time() - t, 1), "adapted": model.adapted_,
           "clusters_used": int(len(np.unique(pred)))}
    print(f"seed {seed}: " + " ".join(f"{m} ACC={out[m][0]:.4f} NMI={out[m][1]:.4f}"
                                      for m in ("dgg", "kmeans_raw", "kmeans_ae"))
          + f" ({out['seconds']} s)", flush=True)
    return out


def summarise(runs):
    """results.json's shape: per method, the per-seed ACC and NMI lists."""
    return {m: {"acc": [r[m][0] for r in runs], "nmi": [r[m][1] for r in runs]}
            for m in ("dgg", "kmeans_raw", "kmeans_ae")}


def write_json(path, obj):
    from dgg_tf.core.files import clean, write_bytes_atomic
    text = json.dumps(clean(obj), indent=2) + "\n"
    write_bytes_atomic(path, lambda f: f.write(text), mode="w")


def main(argv=None):
    p = CommandParser(prog="reproduce/digits.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(HERE, "configs", "digits.json"),
                   metavar="FILE", help="the estimator's settings, a JSON file "
                   "(default reproduce/configs/digits.json)")
    p.add_argument("--seeds", type=non_negative_int, nargs="+", metavar="SEED",
                   help="random_state of each fit (default: the config's seeds)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "digits"),
                   help="folder for results.json and runs.json (default "
                        "reproduce/results/digits)")
    p.add_argument("--verbose", type=int, default=0, choices=[0, 1, 2],
                   help="the estimator's verbose: 0 nothing (default), 1 a line per "
                        "stage and a bar per epoch, 2 a line per epoch")
    p.add_argument("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    add_backend_argument(p)
    args = p.parse_args(argv)
    if select_backend(args.backend):
        return 2
    try:                                  # a bad config is refused before Keras starts
        with open(args.config) as f:
            spec = json.load(f)
    except (ValueError, OSError) as e:
        print(f"error: --config {args.config}: {e}", file=sys.stderr)
        return 2
    from dgg_tf.cli.commands import quiet_tensorflow
    quiet_tensorflow(args.tf_log)
    t0 = time.time()
    try:
        x, y = load_digits01()
        runs = [run_seed(spec, x, y, seed, args.verbose)
                for seed in (args.seeds or spec.get("seeds", [0]))]
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = summarise(runs)
    wall = round(time.time() - t0, 1)
    write_json(os.path.join(args.out, "results.json"), results)
    write_json(os.path.join(args.out, "runs.json"), {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "wall_seconds": wall, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}", "config": spec, "runs": runs})
    for m, r in results.items():
        print(f"{m}: ACC {np.mean(r['acc']):.4f} ± {np.std(r['acc'], ddof=1) if len(r['acc']) > 1 else 0:.4f}"
              f"  NMI {np.mean(r['nmi']):.4f}", flush=True)
    print(f"wall time {wall} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
