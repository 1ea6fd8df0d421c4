"""Seconds per step of a whole training epoch (gather, graph weights, step, logs),
full-size network, B = 100, Nn = 21, on random data; compare with step_time.py.

    python benchmarks/epoch_time.py [--samples 20000] [--precision float32]

Run it on an otherwise idle machine.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from dgg_tf.config import DGGConfig  # noqa: E402
from dgg_tf.models import DGGNetwork  # noqa: E402
from dgg_tf.training import DGGTrainer  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--precision", default="float32")
    args = p.parse_args()
    cfg = DGGConfig(precision=args.precision)
    rng = np.random.default_rng(0)
    x = rng.random((args.samples, cfg.input_dim), dtype=np.float32)
    table = np.stack([np.arange(len(x))] + [rng.permutation(len(x)) for _ in range(40)], 1)
    trainer = DGGTrainer(DGGNetwork(cfg), cfg)
    trainer.train_epoch(x[:1000], table[:1000] % 1000, verbose=0)      # warm-up and tracing
    t = time.perf_counter()
    trainer.train_epoch(x, table, verbose=0)
    steps = -(-len(x) // cfg.batch_size)
    print(f"{args.precision}: {(time.perf_counter() - t) / steps:.3f} s per step over a "
          f"{steps}-step epoch (no labels, so no full-pass evaluation)")
