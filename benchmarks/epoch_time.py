"""Seconds per step of a whole training epoch through ``fit`` (device-side gather,
graph weights, noise, step, logs and callbacks), full-size network, B = 100, Nn = 21,
on random data; compare with step_time.py (the issue's target: at most 1.03 x).

    python benchmarks/epoch_time.py [--samples 20000] [--precision float32]
        [--steps-per-execution 1]

Run it on an otherwise idle machine.
"""
import argparse
import time

import numpy as np

from dgg_tf.config import DGGConfig
from dgg_tf.models import DGGNetwork
from dgg_tf.training import compile_dgg, train_dgg

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--precision", default="float32")
    p.add_argument("--steps-per-execution", type=int, default=1)
    args = p.parse_args()
    cfg = DGGConfig(precision=args.precision)
    rng = np.random.default_rng(0)
    x = rng.random((args.samples, cfg.input_dim), dtype=np.float32)
    table = np.stack([np.arange(len(x))] + [rng.permutation(len(x)) for _ in range(40)], 1)
    net = compile_dgg(DGGNetwork(cfg), cfg, args.steps_per_execution)
    train_dgg(net, x[:1000], table[:1000] % 1000, epochs=1, verbose=0)   # warm-up and tracing
    t = time.perf_counter()
    train_dgg(net, x, table, epochs=1, verbose=0)
    steps = -(-len(x) // cfg.batch_size)
    print(f"{args.precision}: {(time.perf_counter() - t) / steps:.3f} s per step over a "
          f"{steps}-step epoch through fit (no labels, so no full-pass evaluation)")
