"""Median time of one DGG training step (B = 100, Nn = 21, full-size network).

    python benchmarks/step_time.py [--precision float32 mixed_bfloat16] [--steps 30]

Measures the compiled training step alone (gradient + PyTorch-style Adam update
+ the original's post-step evaluation) on random data, after a warm-up.
For float32 it also times the step's matrix products alone, run back to back
(forward, weight and input gradients of every layer, and the post-step
evaluation's forward pass): the floor that no float32 implementation of this
computation goes below on the machine, and that moves with the machine's state.
Run it on an otherwise idle machine.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgg_tf.config import DGGConfig  # noqa: E402
from dgg_tf.models import encoder_sizes  # noqa: E402
from dgg_tf.models import DGGNetwork  # noqa: E402
from dgg_tf.training import DGGTrainer  # noqa: E402


def measure(precision, steps, batch=100, neighbours=20):
    cfg = DGGConfig(precision=precision, num_neighbors=neighbours)
    trainer = DGGTrainer(DGGNetwork(cfg), cfg)
    rng = np.random.default_rng(0)
    x = rng.random((batch * 4, cfg.input_dim), dtype=np.float32)
    table = np.stack([np.arange(len(x))] + [rng.permutation(len(x)) for _ in range(neighbours)], 1)
    inputs = [tuple(tf.constant(a) for a in trainer.batch_inputs(x, table, np.arange(s, s + batch)))
              for s in range(0, len(x), batch)]
    for i in range(5):
        trainer._step(*inputs[i % len(inputs)])
    times = []
    for i in range(steps):
        t = time.perf_counter()
        out = trainer._step(*inputs[i % len(inputs)])
        float(out[1])
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_floor(steps, batch=100, neighbours=20):
    """Median time of the float32 step's matrix products alone, back to back."""
    cfg = DGGConfig(num_neighbors=neighbours)
    sizes = encoder_sizes(cfg)
    layers = list(zip(sizes[:-2], sizes[1:-1])) + [(sizes[-2], 2 * sizes[-1])]   # heads as one
    layers += [(b, a) for a, b in zip(sizes[:-1], sizes[1:])][::-1]              # decoder
    rows = batch * (neighbours + 1)
    rng = np.random.default_rng(0)
    mats = [(tf.constant(rng.random((rows, i), dtype=np.float32)), tf.constant(rng.random((i, o), dtype=np.float32)),
             tf.constant(rng.random((rows, o), dtype=np.float32))) for i, o in layers]

    @tf.function
    def products():
        total = 0.0
        for n, (a, w, dy) in enumerate(mats):
            total += tf.reduce_sum(tf.matmul(a, w)[:1])                          # forward
            total += tf.reduce_sum(tf.matmul(a, dy, transpose_a=True)[:1])       # dW
            if n > 0:                                                             # dX (not of the input)
                total += tf.reduce_sum(tf.matmul(dy, w, transpose_b=True)[:1])
            total += tf.reduce_sum(tf.matmul(a[:batch], w)[:1])                  # post-step evaluation
        return total

    products()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        float(products())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs")
    for precision in args.precision:
        step = measure(precision, args.steps)
        line = f"{precision}: median step {step:.3f} s"
        if precision == "float32":
            floor = matmul_floor(args.steps)
            line += (f"; its matrix products alone {floor:.3f} s, everything else "
                     f"{step - floor:.3f} s ({(step - floor) / step:.0%})")
        print(line, flush=True)
