"""DGG on scikit-learn's bundled digits (1797 images of 8 x 8, no download), from
nothing through the estimator: autoencoder pretraining, exact-kNN neighbours, GMM
init, classifier pretraining and DGG, for each seed; beside K-means on the raw pixels
and K-means on the pretrained autoencoder's means.

    python reproduce/digits.py [--config reproduce/configs/digits.json] [--seeds 0 1 2 3 4]
                               [--out reproduce/results/digits] [--n-init K]

Writes ``results.json`` ({"dgg"|"kmeans_raw"|"kmeans_ae": {"acc": [...], "nmi": [...]}},
one value per seed) and ``runs.json`` (per-seed details) under ``--out``. With
``--n-init K`` each seed S is one ``DGG(n_init=K, random_state=S)``: seeds S..S+K-1,
the one with the lowest final training loss kept (no labels used); ``n_init.json``
then also compares the kept seed's ACC with the mean over its K seeds. Exit 2 on bad
input.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

from dgg_tf.cli.commands import (CommandParser, add_backend_argument, non_negative_int,
                                 positive_int, select_backend)

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


def run_seed(spec, x, y, seed, verbose, n_init=1):
    """One seed: the estimator's fit, then the three methods' ACC and NMI."""
    from dgg_tf import DGG
    from dgg_tf.core.metrics import cluster_acc, nmi
    t = time.time()
    model = DGG(**spec["estimator"], config_overrides=spec.get("config_overrides"),
                random_state=seed, verbose=verbose, n_init=n_init)
    model.fit(x, y, neighbors=spec.get("neighbors", "knn"))
    pred = model.labels_
    k = model.config_.n_clusters
    out = {"seed": seed, "dgg": (cluster_acc(y, pred), nmi(y, pred)),
           "kmeans_raw": kmeans(x, y, k, seed),
           "kmeans_ae": kmeans(ae_means(model.autoencoder_, model.config_, x), y, k, seed),
           "seconds": round(time.time() - t, 1), "adapted": model.adapted_,
           "clusters_used": int(len(np.unique(pred)))}
    if n_init > 1:
        out["n_init_results"] = model.n_init_results_
    print(f"seed {seed}: " + " ".join(f"{m} ACC={out[m][0]:.4f} NMI={out[m][1]:.4f}"
                                      for m in ("dgg", "kmeans_raw", "kmeans_ae"))
          + f" ({out['seconds']} s)", flush=True)
    return out


def n_init_summary(runs):
    """Per run of ``DGG(n_init=K)``: the kept seed (lowest final loss) and its ACC, the
    mean and best ACC over its K seeds; then the means over runs."""
    rows = []
    for r in runs:
        seeds = r["n_init_results"]
        kept = min(seeds, key=lambda s: s["loss"])
        accs = [s["acc"] for s in seeds]
        rows.append({"random_state": r["seed"], "kept_seed": kept["random_state"],
                     "kept_acc": kept["acc"], "mean_acc": float(np.mean(accs)),
                     "best_acc": float(np.max(accs)), "worst_acc": float(np.min(accs))})
    gain = [row["kept_acc"] - row["mean_acc"] for row in rows]
    return {"runs": rows, "kept_acc_mean": float(np.mean([row["kept_acc"] for row in rows])),
            "seed_acc_mean": float(np.mean([row["mean_acc"] for row in rows])),
            "gain_mean": float(np.mean(gain)), "gain_per_run": gain}


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
    p.add_argument("--n-init", type=positive_int, default=1, metavar="K",
                   help="fit DGG(n_init=K) for each seed S: seeds S..S+K-1, keeping the "
                        "lowest final training loss; writes n_init.json too (default 1)")
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
        runs = [run_seed(spec, x, y, seed, args.verbose, args.n_init)
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
    if args.n_init > 1:
        chosen = n_init_summary(runs)
        write_json(os.path.join(args.out, "n_init.json"), {"n_init": args.n_init, **chosen})
        print(f"n_init={args.n_init}: kept seed ACC {chosen['kept_acc_mean']:.4f} against "
              f"{chosen['seed_acc_mean']:.4f} on average over the seeds (gain "
              f"{chosen['gain_mean']:+.4f})", flush=True)
    for m, r in results.items():
        print(f"{m}: ACC {np.mean(r['acc']):.4f} ± {np.std(r['acc'], ddof=1) if len(r['acc']) > 1 else 0:.4f}"
              f"  NMI {np.mean(r['nmi']):.4f}", flush=True)
    print(f"wall time {wall} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
