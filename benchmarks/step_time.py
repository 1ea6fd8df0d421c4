"""Median time of one DGG training step (B = 100, Nn = 21, full-size network).

    python benchmarks/step_time.py [--precision float32 mixed_bfloat16] [--steps 30]

Measures the compiled training step alone, ``DGGNetwork.train_step`` after
``compile_dgg`` (gradient + PyTorch-style Adam update + the original's post-step
evaluation and its logs), on random data, after a warm-up.
For float32 it also times the step's matrix products alone, run back to back
(forward, weight and input gradients of every layer, and the post-step
evaluation's forward pass): the floor that no float32 implementation of this
computation goes below on the machine, and that moves with the machine's state.
Run it on an otherwise idle machine.
"""
import argparse
import os
import time

import numpy as np
import tensorflow as tf

from dgg_tf.config import DGGConfig
from dgg_tf.graph import similarity_weights
from dgg_tf.models import DGGNetwork, encoder_sizes
from dgg_tf.training import compile_dgg


def measure(precision, steps, batch=100, neighbours=20):
    cfg = DGGConfig(precision=precision, num_neighbors=neighbours)
    net = compile_dgg(DGGNetwork(cfg))
    step = tf.function(net.train_step)
    rng = np.random.default_rng(0)
    inputs = []
    for _ in range(4):
        x_nbrs = rng.random((batch, neighbours + 1, cfg.input_dim), dtype=np.float32)
        w = similarity_weights(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode)
        eps = rng.standard_normal((batch, neighbours + 1, cfg.latent_dim), dtype=np.float32)
        inputs.append(tuple(tf.constant(a) for a in (x_nbrs, w, eps)))
    for i in range(5):
        step(inputs[i % len(inputs)])
    times = []
    for i in range(steps):
        t = time.perf_counter()
        float(step(inputs[i % len(inputs)])["loss"])
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
    devices = [d.name for d in tf.config.list_logical_devices() if "CPU" not in d.device_type]
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs, accelerators: {devices or 'none'}")
    for precision in args.precision:
        step = measure(precision, args.steps)
        line = f"{precision}: median step {step:.3f} s"
        if precision == "float32":
            floor = matmul_floor(args.steps)
            line += (f"; its matrix products alone {floor:.3f} s, everything else "
                     f"{step - floor:.3f} s ({(step - floor) / step:.0%})")
        print(line, flush=True)
