"""What the one-pass XLA update costs and saves on TensorFlow, by network size: for each
size, a fresh network's first epoch (tracing and compiling included) and the median
seconds a step of the two epochs after it, with the update fused into one XLA pass
(``backend.OptimizerBase``) and with Keras' own update, each in its own process.
Random data, B = 40, 100-neighbour table. ``FUSE_MIN_STEPS`` (fits that plan fewer steps
skip the pass) is set from this.

    python benchmarks/fused_update.py [--samples 4000] [--sizes 64:16,16,32 ...]

A size is INPUT_DIM:ENCODER_DIMS. Run it on an otherwise idle machine.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

SIZES = ["64:16,16,32", "784:100,100,400", "784:500,500,2000"]


def measure(mode, size, samples):
    """{weights, first, step} of one network trained in this process."""
    import keras
    import numpy as np

    from dgg_tf.backend import tensorflow_backend
    from dgg_tf.core.config import DGGConfig
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.stages.dgg import compile_dgg, fit_dgg
    tensorflow_backend.FUSE_MIN_STEPS = 0 if mode == "fused" else float("inf")
    dim, dims = size.split(":")
    rng = np.random.default_rng(0)
    x = rng.random((samples, int(dim)), dtype=np.float32)
    table = rng.integers(0, samples, (samples, 100)).astype(np.int64)
    cfg = DGGConfig().replace(input_dim=int(dim), batch_size=40, epochs=1,
                              encoder_dims=tuple(int(d) for d in dims.split(",")))
    keras.utils.set_random_seed(0)
    net = compile_dgg(DGGNetwork(cfg))
    t0 = time.perf_counter()
    fit_dgg(net, x, table, verbose=0)
    first = time.perf_counter() - t0
    history = fit_dgg(net, x, table, initial_epoch=1, epochs=3, verbose=0)
    steps = -(-samples // cfg.batch_size)
    per_step = float(np.median([r["seconds"] for r in history])) / steps
    weights = sum(int(np.prod(v.shape)) for v in net.trainable_variables)
    return {"weights": weights, "first": first, "step": per_step}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--one", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.samples)))
        return
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.samples} samples, B 40; tensorflow")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for size in args.sizes:
        got = {}
        for mode in ("fused", "keras"):
            out = subprocess.run([sys.executable, __file__, "--samples", str(args.samples),
                                  "--one", mode, size], env=env, capture_output=True,
                                 text=True, check=True).stdout
            got[mode] = json.loads(out.strip().splitlines()[-1])
        f, k = got["fused"], got["keras"]
        saved = k["step"] - f["step"]
        even = (f["first"] - k["first"]) / saved if saved > 0 else float("inf")
        print(f"{size} ({f['weights']} weights): first epoch fused {f['first']:.2f} s, keras "
              f"{k['first']:.2f} s; a step fused {f['step'] * 1e3:.2f} ms, keras "
              f"{k['step'] * 1e3:.2f} ms; fusing pays after about {even:.0f} steps")


if __name__ == "__main__":
    main()
