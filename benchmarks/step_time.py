"""Median time of one DGG training step (B = 100, Nn = 21, full-size network).

    python benchmarks/step_time.py [--precision float32 mixed_bfloat16] [--steps 30]

Measures the compiled training step alone (gradient + PyTorch-style Adam update
+ the original's post-step evaluation) on random data, after a warm-up.
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


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs")
    for precision in args.precision:
        print(f"{precision}: median step {measure(precision, args.steps):.3f} s", flush=True)
