"""Pretrain the 784-500-500-2000-10 autoencoder on MNIST and save it in our flat format.

    python reproduce/pretrain_mnist.py --out pretrained/mnist_ae.h5 [--schedule section9|dec]
        [--data DIR] [--precision float32|mixed_bfloat16] [--seed 0] [--subset N]
        [--set NAME=VALUE ...] [--resume]

A checkpoint (``OUT.ckpt.h5``) is written after every epoch; ``--resume``
continues from the last finished stage. At the end the K-means ACC/NMI of the
encoder means are measured and stored with the weights as provenance.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dgg_tf.config import DGGConfig  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="pretrained/mnist_ae.h5")
    p.add_argument("--data", default=None, help="MNIST directory/npz/pkl.gz (default: Keras cache)")
    p.add_argument("--schedule", choices=["section9", "dec"], default="section9")
    p.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=None, help="use the first N samples")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", default=None, help="start from these autoencoder weights")
    args = p.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args):
    from dgg_tf.data import load_mnist
    from dgg_tf.metrics import kmeans_scores
    from dgg_tf.models import Autoencoder
    from dgg_tf.models import encode_mean
    from dgg_tf.pretrain import pretrain_autoencoder
    from dgg_tf.weights import load_weights_h5, save_weights_h5, set_params

    config = DGGConfig(pretrain_schedule=args.schedule, precision=args.precision)
    config = config.with_assignments(args.set)
    ckpt = args.out + ".ckpt.h5"
    if os.path.exists(args.out) and not args.resume:
        raise ValueError(f"{args.out} exists; remove it or pass --resume")
    x, y = load_mnist(args.data)
    if args.subset:
        x, y = x[:args.subset], y[:args.subset]
    state = None
    if args.resume and os.path.exists(ckpt):
        params, prov = load_weights_h5(ckpt)
        state = {"params": params, "stage": int(prov["stage"]), "history": prov["history"]}
        print(f"resuming from {ckpt}: {state['stage']} stage(s) done")
    elif args.init:
        from dgg_tf.weights import load_any
        state = {"params": load_any(args.init, config)[0], "stage": 0, "history": {}}
    t0 = time.time()
    command = "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:])

    def provenance(state, extra=None):
        return {"command": command, "seed": args.seed, "schedule": config.pretrain_schedule,
                "precision": config.precision, "data": f"MNIST train+test, {len(x)} images",
                "config": config.to_dict(), "stage": state["stage"], "history": state["history"],
                "wall_seconds": round(time.time() - t0, 1), **(extra or {})}

    def on_epoch(state, ae, label, epoch):
        from dgg_tf.weights import get_params
        save_weights_h5(ckpt, get_params(ae) if epoch is not None else state["params"], provenance(state))
        if epoch is None or epoch % 10 == 0:
            _, m = kmeans_scores(encode_mean(ae, x), y, config.n_clusters, 1)
            print(f"[{label} {epoch or 'done'}] K-means(n_init=1) ACC={m['kmeans_acc']:.4f} "
                  f"NMI={m['kmeans_nmi']:.4f} elapsed={time.time() - t0:.0f}s", flush=True)

    params, state = pretrain_autoencoder(x, config, seed=args.seed, state=state, on_epoch=on_epoch)
    ae = Autoencoder(config)
    set_params(ae, params)
    _, metrics = kmeans_scores(encode_mean(ae, x), y, config.n_clusters, config.kmeans_n_init,
                               config.kmeans_random_state)
    print(f"K-means(n_init={config.kmeans_n_init}) ACC={metrics['kmeans_acc']:.4f} "
          f"NMI={metrics['kmeans_nmi']:.4f}")
    save_weights_h5(args.out, params, provenance(state, {"metrics": metrics, "epochs": {
        k: len(v) for k, v in state["history"].items()}}))
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
