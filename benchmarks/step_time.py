"""Median time of one DGG training step (B = 100, Nn = 21, full-size network), on one
Keras backend or side by side on two.

    python benchmarks/step_time.py [--backend tensorflow|jax] [--precision float32 ...]
        [--steps 30] [--epoch-samples 5000] [--alone]

For each precision it prints, on the chosen backend:

- ``step``: ``net.step`` after ``compile_dgg`` (the audit surface: gradient, PyTorch-style
  Adam update, the original's post-step evaluation and its logs) on given batches
  already on the device, after a warm-up, the loss read back each step;
- ``all-in``: seconds per step of the second of two epochs through ``fit`` (the index
  batches from the host, the device-side gather, graph weights and noise, the step, the
  logs and the callbacks), and its ratio to ``step`` (the epoch-to-step ratio);
- for float32, the step's matrix products alone, run back to back: the machine's floor
  for this computation.

``--backend jax`` also runs TensorFlow side by side (each backend in a fresh process: a
process has one Keras backend), unless ``--alone`` or TensorFlow is not installed, and
prints JAX / TensorFlow per figure. On JAX, float32 matrix products run at dgg_tf's
precision, ``highest`` (``JAX_DEFAULT_MATMUL_PRECISION`` chooses another, e.g. ``high``
for TF32 on a GPU). Run it on an otherwise idle machine.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _batches(cfg, batch, neighbours, n=4):
    """``n`` given steps' inputs (x_nbrs, w, eps) as backend tensors."""
    from keras import ops

    from dgg_tf.numerics.graph import similarity_weights
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        x_nbrs = rng.random((batch, neighbours + 1, cfg.input_dim), dtype=np.float32)
        w = similarity_weights(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode)
        eps = rng.standard_normal((batch, neighbours + 1, cfg.latent_dim), dtype=np.float32)
        out.append(tuple(ops.convert_to_tensor(a) for a in (x_nbrs, w, eps)))
    return out


def measure(precision, steps, batch=100, neighbours=20):
    """Median seconds of ``net.step`` on given device batches (loss read back)."""
    from dgg_tf.core.config import DGGConfig
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.stages.dgg import compile_dgg
    cfg = DGGConfig(precision=precision, num_neighbors=neighbours)
    net = compile_dgg(DGGNetwork(cfg))
    inputs = _batches(cfg, batch, neighbours)
    for i in range(5):
        float(net.step(inputs[i % len(inputs)])["loss"])
    times = []
    for i in range(steps):
        t = time.perf_counter()
        float(net.step(inputs[i % len(inputs)])["loss"])
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure_epoch(precision, samples, steps_per_execution=1):
    """Seconds per step of the second of two epochs through ``fit`` on random data."""
    import keras

    from dgg_tf.core.config import DGGConfig
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.stages.dgg import compile_dgg, train_dgg

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = time.perf_counter() - self.t0

    # the run's 300 epochs planned, 2 trained: the update path a real run on these
    # samples takes (a fit that plans under 500 steps skips the fused update:
    # backend.plan_steps; the default 20000 samples plan 60000)
    cfg = DGGConfig(precision=precision)
    rng = np.random.default_rng(0)
    x = rng.random((samples, cfg.input_dim), dtype=np.float32)
    table = np.stack([np.arange(samples)] + [rng.permutation(samples) for _ in range(40)], 1)
    net = compile_dgg(DGGNetwork(cfg), cfg, steps_per_execution)
    clock = EpochClock()
    train_dgg(net, x, table, epochs=2, callbacks=[clock], verbose=0)
    return clock.last / -(-samples // cfg.batch_size)


def matmul_floor(steps, batch=100, neighbours=20):
    """Median time of the float32 step's matrix products alone, back to back: forward,
    weight and input gradients of every layer, and the post-step evaluation's forward."""
    from keras import ops

    from dgg_tf import backend
    from dgg_tf.core.config import DGGConfig, encoder_sizes
    sizes = encoder_sizes(DGGConfig(num_neighbors=neighbours))
    layers = list(zip(sizes[:-2], sizes[1:-1])) + [(sizes[-2], 2 * sizes[-1])]   # heads as one
    layers += [(b, a) for a, b in zip(sizes[:-1], sizes[1:])][::-1]              # decoder
    rows = batch * (neighbours + 1)
    rng = np.random.default_rng(0)
    mats = [tuple(ops.convert_to_tensor(rng.random(s, dtype=np.float32))
                  for s in ((rows, i), (i, o), (rows, o))) for i, o in layers]

    def products(mats):
        total = 0.0
        for n, (a, w, dy) in enumerate(mats):
            total += ops.sum(ops.matmul(a, w)[:1])                              # forward
            total += ops.sum(ops.matmul(ops.transpose(a), dy)[:1])              # dW
            if n > 0:                                                            # dX (not of the input)
                total += ops.sum(ops.matmul(dy, ops.transpose(w))[:1])
            total += ops.sum(ops.matmul(a[:batch], w)[:1])                      # post-step evaluation
        return total

    run = backend.compiled(products)
    float(run(mats))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        float(run(mats))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure_all(precisions, steps, samples):
    """Every figure of this process's backend: {precision: {step, all_in[, floor]}}."""
    out = {}
    for precision in precisions:
        row = {"step": measure(precision, steps)}
        if samples:
            row["all_in"] = measure_epoch(precision, samples)
        if precision == "float32":
            row["floor"] = matmul_floor(steps)
        out[precision] = row
    return out


def describe():
    """This process's backend, its version and devices."""
    import keras

    from dgg_tf import backend
    devices = keras.distribution.list_devices()
    return {**backend.versions(), "keras": keras.__version__, "devices": devices,
            "cpus": os.cpu_count()}


def run_backend(name, args):
    """``measure_all`` on backend ``name`` in a fresh process; its JSON result."""
    env = {**os.environ, "KERAS_BACKEND": name, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, os.path.abspath(__file__), "--backend", name, "--json",
           "--steps", str(args.steps), "--epoch-samples", str(args.epoch_samples),
           "--precision", *args.precision]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"step_time on {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(results):
    """One line per backend and precision, then JAX / TensorFlow where both ran."""
    for name, res in results.items():
        print(f"{name}: {res['about']}")
        for precision, row in res["figures"].items():
            line = f"  {precision}: step {row['step']:.4f} s"
            if "all_in" in row:
                line += f"; all-in {row['all_in']:.4f} s (ratio {row['all_in'] / row['step']:.3f})"
            if "floor" in row:
                line += f"; matrix products alone {row['floor']:.4f} s"
            print(line)
    if len(results) == 2:
        (a, ra), (b, rb) = results.items()
        for precision, row in ra["figures"].items():
            ratios = ", ".join(f"{key} {row[key] / rb['figures'][precision][key]:.3f}"
                               for key in row)
            print(f"{a} / {b}, {precision}: {ratios}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("tensorflow", "jax"),
                   default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    p.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--epoch-samples", type=int, default=5000,
                   help="rows of the timed fit epoch (0: no all-in figure)")
    p.add_argument("--alone", action="store_true", help="no TensorFlow side by side")
    p.add_argument("--json", action="store_true", help="measure in this process, print JSON")
    args = p.parse_args(argv)
    if args.json:
        os.environ["KERAS_BACKEND"] = args.backend
        sys.path.insert(0, os.path.dirname(HERE))
        about = describe()
        figures = measure_all(args.precision, args.steps, args.epoch_samples)
        print(json.dumps({"about": about, "figures": figures}))
        return 0
    names = [args.backend]
    if args.backend != "tensorflow" and not args.alone and importlib.util.find_spec("tensorflow"):
        names.append("tensorflow")
    print_table({name: run_backend(name, args) for name in names})
    return 0


if __name__ == "__main__":
    sys.exit(main())
