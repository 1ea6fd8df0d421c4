"""Seconds per step of a whole training epoch through ``fit`` (device-side gather,
graph weights, noise, step, logs and callbacks), full-size network, B = 100, Nn = 21,
on random data, side by side with the step alone (``step_time.measure``); the issue's
target is at most 1.03 x. Two epochs run in one ``fit``; the second is timed (the first
includes tracing).

    python benchmarks/epoch_time.py [--samples 20000] [--precision float32]
        [--steps-per-execution 1]

Run it on an otherwise idle machine.
"""
import argparse
import os
import sys
import time

import keras
import numpy as np

from dgg_tf.config import DGGConfig
from dgg_tf.models import DGGNetwork
from dgg_tf.training import compile_dgg, train_dgg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import measure  # noqa: E402  (the sibling benchmark)


class EpochClock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.last = time.perf_counter() - self.t0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--precision", default="float32")
    p.add_argument("--steps-per-execution", type=int, default=1)
    args = p.parse_args()
    cfg = DGGConfig(precision=args.precision, epochs=2)
    rng = np.random.default_rng(0)
    x = rng.random((args.samples, cfg.input_dim), dtype=np.float32)
    table = np.stack([np.arange(len(x))] + [rng.permutation(len(x)) for _ in range(40)], 1)
    net = compile_dgg(DGGNetwork(cfg), cfg, args.steps_per_execution)
    clock = EpochClock()
    train_dgg(net, x, table, callbacks=[clock], verbose=0)
    steps = -(-len(x) // cfg.batch_size)
    per_step = clock.last / steps
    step = measure(args.precision, 30)
    print(f"{args.precision}: {per_step:.3f} s per step over a {steps}-step epoch through fit "
          f"(no labels, so no full-pass evaluation); the step alone {step:.3f} s; ratio "
          f"{per_step / step:.3f}")
