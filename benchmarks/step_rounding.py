"""How far float32 rounding alone moves three DGG steps: the same start, batches and
noise run on every execution path of the float32 step (TensorFlow eager; TensorFlow
graph, as ``fit`` and ``net.step`` run it; TensorFlow XLA; JAX jit, as ``fit`` and
``net.step`` run it) and once in
float64 (JAX with x64, every float32 of the step widened), then compared.

    python benchmarks/step_rounding.py [--preset code paper]

Prints, per path, the worst relative difference in norm of any parameter tensor from the
float64 run, the same between each pair of float32 paths, and the step-1 gradients'
worst relative error. Why: the issue asked the TensorFlow and JAX steps to agree to 1e-4
in every parameter after 3 steps; this shows what float32 rounding itself allows. Each
path runs in its own process (one backend per process); about a minute in all.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys

import numpy as np

PATHS = {"tf-eager": "tensorflow", "tf-graph": "tensorflow", "tf-xla": "tensorflow",
         "jax": "jax", "float64": "jax"}


def widen_to_float64():
    """Make the step compute in float64 on JAX: x64 on, every explicit float32 (casts,
    conversions, the layers' dtype policy) mapped to float64. Before dgg_tf loads."""
    os.environ["JAX_ENABLE_X64"] = "1"
    import keras
    from keras import ops
    keras.config.set_floatx("float64")
    cast, convert = ops.cast, ops.convert_to_tensor
    wide = lambda d: "float64" if d in ("float32", "bfloat16") else d  # noqa: E731
    ops.cast = lambda x, dtype: cast(x, wide(dtype))
    ops.convert_to_tensor = lambda x, dtype=None, **k: convert(
        x, wide(dtype) if dtype else dtype, **k)
    import dgg_tf.numerics.models as models
    models._policy = lambda config: "float64"


def pytorch_start(net, rng):
    """PyTorch's default Linear init (uniform +-1/sqrt(fan_in)) from NumPy; GMM means
    N(0, 1), stds 1: one start for every path."""
    from dgg_tf.numerics.weights import get_params, set_params
    params = {}
    for key, value in get_params(net).items():
        layer = key.split("/")[0]
        if layer == "gmm":
            params[key] = (np.ones_like(value) if key.endswith("std")
                           else rng.standard_normal(value.shape).astype(np.float32))
        else:
            bound = 1.0 / np.sqrt(get_params(net)[f"{layer}/W"].shape[0])
            params[key] = rng.uniform(-bound, bound, value.shape).astype(np.float32)
    set_params(net, params)


def batches(config, rng, steps=3):
    for _ in range(steps):
        x = rng.random((100, 21, config.input_dim)).astype(np.float32)
        w = rng.random((100, 21)).astype(np.float32)
        w /= w.sum(axis=1, keepdims=True)
        yield x, w, rng.standard_normal((100, 21, config.latent_dim)).astype(np.float32)


def step_function(net, path):
    """One step from a given batch on ``path``; also the step-1 gradient function."""
    from keras import ops

    from dgg_tf import backend
    loss = lambda x, w, e: net._loss(x, w, e, ops.cast(ops.shape(x)[0], "float32"))  # noqa
    if path in ("jax", "float64", "tf-graph"):     # net.step: jit on JAX, traced on TF
        grads = backend.gradient_function(net.trainable_variables, loss)
        return net.step, lambda *a: grads(*a)[2]
    import tensorflow as tf
    if path == "tf-eager":
        grads = backend.gradient_function(net.trainable_variables, loss, compile=False)
        return (lambda batch: net.train_on(tuple(tf.constant(a) for a in batch)),
                lambda *a: grads(*a)[2])
    run = tf.function(net.train_on, jit_compile=True)

    def gradients(*args):
        with tf.GradientTape() as tape:
            value, _ = loss(*args)
        return tape.gradient(value, net.trainable_variables)
    return (lambda batch: run(tuple(tf.constant(a) for a in batch))), tf.function(
        gradients, jit_compile=True)


def run_path(preset, path, out):
    """Child process: 3 steps on ``path``; saves the parameters and step-1 gradients."""
    if path == "float64":
        widen_to_float64()
    from keras import ops

    from dgg_tf.core.config import DGGConfig
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.numerics.weights import get_params
    from dgg_tf.stages.dgg import compile_dgg
    config = DGGConfig.preset(preset)
    rng = np.random.default_rng(7)
    net = compile_dgg(DGGNetwork(config))
    pytorch_start(net, rng)
    step, gradients = step_function(net, path)
    saved = {}
    for i, batch in enumerate(batches(config, rng)):
        if i == 0:
            dtype = "float64" if path == "float64" else "float32"
            grads = gradients(*(ops.convert_to_tensor(a, dtype) for a in batch))
            saved.update({f"g_{v.path}": np.asarray(g, np.float64)
                          for v, g in zip(net.trainable_variables, grads)})
        step(batch)
    saved.update({f"p_{k}": v for k, v in get_params(net).items()})
    np.savez(out, **saved)


def worst(a, b, prefix):
    keys = [k for k in b.files if k.startswith(prefix)]
    return max(float(np.linalg.norm(a[k].astype(np.float64) - b[k])
                     / np.linalg.norm(b[k])) for k in keys)


def compare(preset, tmp):
    files = {}
    for path, name in PATHS.items():
        out = os.path.join(tmp, f"{preset}-{path}.npz")
        env = {**os.environ, "KERAS_BACKEND": name, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run([sys.executable, __file__, "--child", preset, path, out], env=env,
                       check=True, stderr=subprocess.DEVNULL)
        files[path] = np.load(out)
    ref = files.pop("float64")
    result = {"vs float64": {p: {"params": worst(f, ref, "p_"), "step-1 grads": worst(f, ref, "g_")}
                             for p, f in files.items()},
              "pairs": {f"{a} vs {b}": worst(files[a], files[b], "p_")
                        for a, b in itertools.combinations(files, 2)}}
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", nargs="+", default=["code", "paper"])
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return run_path(*args.child)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset:
            r = compare(preset, tmp)
            print(f"{preset} preset, 3 steps (worst parameter tensor, relative in norm):")
            for path, v in r["vs float64"].items():
                print(f"  {path:9s} vs float64: params {v['params']:.1e}, "
                      f"step-1 gradients {v['step-1 grads']:.1e}")
            for pair, v in r["pairs"].items():
                print(f"  {pair:22s}: params {v:.1e}")
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
