"""DGG on three tight Gaussian blobs that K-means clusters perfectly.

    python reproduce/blobs.py [--seeds 0 1 2 3 4] [--set NAME=VALUE ...] [--epochs 3]
                              [--diagnose-steps 6] [--out DIR]

Data: ``make_blobs(600, n_features=20, centers=3, cluster_std=0.5, random_state=0)``,
min-max scaled over the whole array to [0, 1]. For each seed (the estimator's
``random_state``) it fits ``DGG(n_clusters=3, epochs, pretrain_epochs=20,
classifier_epochs=10, config_overrides=--set ...)`` with kNN neighbours and prints the
fitted ``stage_scores_`` (neighbour purity, K-means, GMM init, classifier, after DGG
step 1, final ACC). With ``--diagnose-steps N`` (first seed only) it then rebuilds the
network from that fit's pretrained autoencoder, repeats GMM init and classifier
pretraining, and runs N DGG steps by hand (``DGGNetwork.train_step``), printing before
the steps the GMM std and exp(logvar), and per step every ELBO term (divided by B),
the largest gradient norms per variable and the full-pass ACC after the step.
``--out DIR`` writes results.json (per-seed stage scores, wall time, config).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from dgg_tf.cli.commands import (CommandParser, add_backend_argument,  # noqa: E402
                                 non_negative_int, positive_int, run_main, select_backend)


def blobs():
    """The issue's data: 600 x 20 floats in [0, 1] (min-max over the whole array), labels."""
    from sklearn.datasets import make_blobs
    x, y = make_blobs(600, n_features=20, centers=3, cluster_std=0.5, random_state=0)
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32), y.astype(np.int64)


def estimator(seed, overrides, epochs):
    from dgg_tf import DGG
    return DGG(n_clusters=3, epochs=epochs, pretrain_epochs=20, classifier_epochs=10,
               random_state=seed, config_overrides=overrides or None)


def diagnose(model, x, y, steps):
    """The first ``steps`` DGG steps, by hand, from ``model``'s pretrained autoencoder:
    the batches and noise ``fit`` would draw (``BatchFeed.assemble``), each step run by
    ``net.step`` (any backend)."""
    from keras import ops

    from dgg_tf.api.core import Options, build_dgg, initial_stages
    from dgg_tf.api.fitting import tables
    from dgg_tf.core.inputs import run_inputs
    from dgg_tf.numerics.evaluation import full_pass_scores
    from dgg_tf.numerics.objective_numpy import loss_and_gradients
    from dgg_tf.stages.dgg import BatchFeed, dgg_dataset, encode
    config = model.config_
    found, info = tables(x, config, "knn", model.autoencoder_, verbose=0)
    inputs = run_inputs(config, x, y, found, model.autoencoder_, {"source": "blobs"},
                        neighbor_info=info)
    net = build_dgg(config, model.autoencoder_, verbose=0)
    initial_stages(net, inputs, config, Options(verbose=0))

    def log_variance():
        return np.exp(ops.convert_to_numpy(net.encoder(ops.convert_to_tensor(x))[1]))
    mean, std = encode(net, x), ops.convert_to_numpy(net.gmm.std)
    print(f"encoder means: overall std per dim {np.round(mean.std(0), 3).tolist()}")
    print(f"GMM std after init: min {std.min():.4g} median {np.median(std):.4g} max "
          f"{std.max():.4g}; per cluster mean {np.round(std.mean(0), 4).tolist()}; "
          f"sum_d 1/s^2 per cluster {np.round((1 / std ** 2).sum(0)).tolist()}")
    print(f"untrained log-variance head: exp(logvar) mean {log_variance().mean():.4g}")
    feed = BatchFeed(x, inputs.table, config)
    batches = dgg_dataset(inputs.table, None, config)
    for t in range(min(steps, len(batches))):
        x_nbrs, w, eps = (ops.convert_to_numpy(a) for a in feed.assemble(batches[t]))
        terms, _, grads = loss_and_gradients(net, x_nbrs, w, eps, config)
        norms = sorted(((v.path, float(np.linalg.norm(g)))
                        for v, g in zip(net.trainable_variables, grads)), key=lambda kv: -kv[1])
        logs = net.step((x_nbrs, w, eps))
        scores = full_pass_scores(net, x, y)
        std = np.abs(ops.convert_to_numpy(net.gmm.std))
        print(f"step {t + 1}: loss {float(logs['loss']):.4g}; per sample "
              + ", ".join(f"{k} {v / len(x_nbrs):.4g}" for k, v in terms.items()))
        print("   largest gradient norms: " + ", ".join(f"{k} {v:.3g}" for k, v in norms[:4]))
        print(f"   after the step: full-pass ACC {scores['full_acc']:.3f}, "
              f"{scores['clusters_used']} clusters; GMM std per cluster "
              f"{np.round(std.mean(0), 4).tolist()}; exp(logvar) mean "
              f"{log_variance().mean():.3g}")


def main(argv=None):
    p = CommandParser(prog="reproduce/blobs.py", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0], metavar="SEED",
                   help="the estimator's random_state, one fit each (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a DGGConfig field for config_overrides (repeatable)")
    p.add_argument("--epochs", type=positive_int, default=3, help="DGG epochs (default 3)")
    p.add_argument("--diagnose-steps", type=non_negative_int, default=0, metavar="N",
                   help="after the first seed's fit, run N DGG steps by hand and print "
                        "each (default 0: none)")
    p.add_argument("--out", default=None, help="folder for results.json (default: none)")
    add_backend_argument(p)
    args = p.parse_args(argv)
    if select_backend(args.backend):
        return 2
    if run_main(lambda: overrides_of(args.set) and 0):    # a bad --set, before Keras
        return 2
    from dgg_tf.cli.commands import quiet_tensorflow
    quiet_tensorflow()
    return run_main(lambda: run(args))


def overrides_of(assignments):
    """{name: value} of the --set assignments, checked by ``DGGConfig``."""
    from dgg_tf.core.config import DGGConfig
    config = DGGConfig().with_assignments(assignments)
    return {k: getattr(config, k) for k in (a.partition("=")[0].strip() for a in assignments)}


def run(args):
    """Every seed's fit (and the diagnosis of the first); a bad --set raises ValueError,
    which ``run_main`` reports as one ``error:`` line and exit code 2."""
    overrides = overrides_of(args.set)
    x, y = blobs()
    rows = []
    for i, seed in enumerate(args.seeds):
        t0 = time.time()
        model = estimator(seed, overrides, args.epochs).fit(x, y, neighbors="knn")
        wall = time.time() - t0
        scores = model.stage_scores_
        rows.append({"seed": seed, "wall_seconds": round(wall, 1), **scores,
                     "clusters_used": model.history_[-1].get("clusters_used"),
                     "epoch_loss": [r["loss"] for r in model.history_]})
        print(f"seed {seed} ({wall:.0f} s): " + ", ".join(
            f"{k} {v:.3f}" for k, v in scores.items() if v is not None)
            + f", clusters at the end {rows[-1]['clusters_used']}, epoch losses "
            + " ".join(f"{v:.4g}" for v in rows[-1]["epoch_loss"]), flush=True)
        if i == 0 and args.diagnose_steps:
            diagnose(model, x, y, args.diagnose_steps)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"overrides": overrides, "epochs": args.epochs, "runs": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
