"""The DGG step on real data against a float64 run of the original's formula.

Pieces, run in processes of their own (a process has one Keras backend, and the float64
reference needs JAX's x64 mode, which is global):

- ``start()``: the real start: the shipped autoencoder (pretrained/mnist_ae.h5), the
  GMM init and pretrained classifier f2 (tests/data/mnist_start.npz for full MNIST,
  mnist_first300_start.npz for its first 300 images; made by ``make_start``), and the
  log-variance head in PyTorch's default init (seeded);
- ``batches(config, steps, data)``: real MNIST batches from the shipped neighbour table
  (or, for the first 300 images, exact kNN on their pixels), their graph weights, and
  seeded noise; ``CASES`` names each preset and data set compared;
- ``keras_steps``: ``net.step`` on the Keras backend of the process (what is tested);
- ``reference_steps``: the original's step written from its formula (docs/quirks.md,
  section 7) in ``keras.ops``, independent of dgg_tf's numerics: float64 throughout on
  JAX (the reference), or float32 with the rows in either order (the original stacks
  column by column, r = j * B + i; dgg_tf sample by sample, r = i * Nn + j), on XLA's
  kernels or on TensorFlow's (``-tf``): float32 paths that differ only in kernels and
  reduction order, whose largest distance from float64 is the float32 rounding band;
- ``summary``: each path's distance from the float64 run after each saved step, its
  wrong-way weights in step 1, and the band.

Every path saves the parameters after steps ``SAVED`` as float32 .npz.
``benchmarks/real_data_parity.py`` runs the whole check and prints it.
"""
from __future__ import annotations

import functools
import math
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The starts: GMM init and pretrained f2 (``make_start``), per data set.
STARTS = {"mnist": os.path.join(ROOT, "tests", "data", "mnist_start.npz"),
          "first300": os.path.join(ROOT, "tests", "data", "mnist_first300_start.npz")}
#: The cases compared, each a preset on a data set: full MNIST with the shipped table,
#: or its first 300 images with exact kNN on their pixels, started as
#: ``reproduce/sweep.py --subset ... --subset-neighbors raw --set kmeans_n_init=2 --set
#: classifier_epochs=2`` starts: there Adam's un-warmed first step saturates decoder
#: outputs at exactly 1.0, so the case checks the step through saturation.
CASES = {"code": ("code", "mnist"), "paper": ("paper", "mnist"),
         "code-first300": ("code", "first300")}
SUBSET_START = {"kmeans_n_init": 2, "classifier_epochs": 2}
AUTOENCODER = os.path.join(ROOT, "pretrained", "mnist_ae.h5")
TABLE = os.path.join(ROOT, "pretrained", "mnist_neighbors.npz")
MNIST = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
SAVED = (1, 3)          # steps after which the parameters are saved
LOG_EPS = 1e-10         # the original's epsilon inside log(xhat), log(1 - xhat), log(gamma)


def mnist_path():
    return os.environ.get("DGG_MNIST", MNIST)


# ---------------------------------------------------------------- the start and the data
def make_start(data="mnist", seed=0):
    """GMM init (K-means) and f2 pretraining on the shipped autoencoder's encoder means,
    as ``pipeline.run_dgg`` starts: full MNIST with the code preset's settings (10
    restarts, 30 epochs), or its first 300 images with ``SUBSET_START``; saved with its
    provenance in ``STARTS[data]``. Run once (TensorFlow, 2 cores: about 1 minute)."""
    import keras

    from dgg_tf.core.config import DGGConfig
    from dgg_tf.core.weight_files import load_autoencoder
    from dgg_tf.numerics.models import DGGNetwork, encode_mean
    from dgg_tf.numerics.weights import get_params, set_params
    from dgg_tf.stages.initialise import init_gmm, pretrain_classifier
    keras.utils.set_random_seed(seed)
    config = DGGConfig.preset("code", seed=seed, **(SUBSET_START if data != "mnist" else {}))
    x, y = _data(data)
    net = DGGNetwork(config)
    set_params(net, load_autoencoder(AUTOENCODER, config)[0], partial=True)
    report = init_gmm(net, x, y, config)
    history = pretrain_classifier(net, encode_mean(net, x), report["kmeans_labels"], config,
                                  labels_true=y, seed=seed)
    params = get_params(net)
    keep = {k: params[k] for k in ("gmm/mean", "gmm/std", "classifier/W", "classifier/b")}
    provenance = (f"tests/parity.py make_start({data!r}, seed={seed}): shipped mnist_ae.h5, "
                  f"{len(x)} MNIST images, K-means n_init={config.kmeans_n_init} (ACC "
                  f"{report['kmeans_acc']:.4f}), f2 {config.classifier_epochs} epochs "
                  f"{config.classifier_pretrain_loss} (ACC {history[-1].get('acc', float('nan')):.4f})"
                  f", keras backend {keras.backend.backend()}")
    out = STARTS[data]
    tmp = out + ".tmp.npz"
    np.savez(tmp, provenance=provenance, **keep)
    os.replace(tmp, out)
    return provenance


def start(config, data="mnist", seed=0):
    """The real start as a float32 params dict of every DGG weight."""
    from dgg_tf.core.weight_files import load_autoencoder
    params = dict(load_autoencoder(AUTOENCODER, config)[0])
    with np.load(STARTS[data]) as saved:
        params.update({k: saved[k] for k in saved.files if k != "provenance"})
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(config.encoder_dims[-1])      # PyTorch's nn.Linear default init
    params["logvar/W"] = rng.uniform(-bound, bound, (config.encoder_dims[-1], config.latent_dim))
    params["logvar/b"] = rng.uniform(-bound, bound, config.latent_dim)
    return {k: np.asarray(v, np.float32) for k, v in params.items()}


@functools.lru_cache(maxsize=None)
def batches(config, steps, data="mnist", seed=0):
    """``steps`` real batches (x_nbrs [B, Nn, D], w [B, Nn], eps [B, Nn, M]), float32, in
    the order of shuffled epochs."""
    from dgg_tf.numerics.graph import similarity_weights
    x, _ = _data(data)
    table = _table(data, config)
    rng = np.random.default_rng(seed)
    epochs = -(-steps * config.batch_size // len(x))
    order = np.concatenate([rng.permutation(len(x)) for _ in range(epochs)])
    out = []
    for s in range(steps):
        rows = order[s * config.batch_size:(s + 1) * config.batch_size]
        x_nbrs = x[table[rows]]
        w = similarity_weights(x_nbrs, config.sigma, config.similarity, config.sigma_mode)
        eps = rng.standard_normal((*x_nbrs.shape[:2], config.latent_dim)).astype(np.float32)
        out.append((x_nbrs, w, eps))
    return out


@functools.lru_cache(maxsize=2)
def _data(data):
    """(x, y): all of MNIST, or its first 300 images."""
    from dgg_tf.core.data import load_mnist
    x, y = load_mnist(mnist_path())
    return (x, y) if data == "mnist" else (x[:300], y[:300])


def _table(data, config):
    """Columns 0..num_neighbors of the shipped table, or of exact kNN on the pixels."""
    if data == "mnist":
        with np.load(TABLE) as t:
            return t["table"][:, :config.num_neighbors + 1]
    from dgg_tf.stages.neighbors import rebuild_raw
    tables, _ = rebuild_raw(_data(data)[0], config)
    return tables[config.neighbor_selection][:, :config.num_neighbors + 1]


def save(path, snapshots):
    """{step: params} -> one .npz of float32 arrays named 'STEP:NAME'."""
    arrays = {f"{s}:{k}": np.asarray(v, np.float32) for s, p in snapshots.items()
              for k, v in p.items()}
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load(path):
    out = {}
    with np.load(path) as f:
        for key in f.files:
            step, name = key.split(":", 1)
            out.setdefault(int(step), {})[name] = f[key]
    return out


# ---------------------------------------------------------------- the Keras step
def keras_steps(case, steps, out):
    """``net.step`` on this process's Keras backend from the real start."""
    from dgg_tf.core.config import DGGConfig
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.numerics.weights import get_params, set_params
    from dgg_tf.stages.dgg import compile_dgg
    preset, data = CASES[case]
    config = DGGConfig.preset(preset)
    net = compile_dgg(DGGNetwork(config))
    set_params(net, start(config, data))
    snapshots = {0: get_params(net)}
    for s, batch in enumerate(batches(config, steps, data), start=1):
        logs = net.step(batch)
        if not np.isfinite(float(logs["loss"])):
            raise FloatingPointError(f"{case}: loss not finite at step {s}")
        if s in SAVED:
            snapshots[s] = get_params(net)
    save(out, snapshots)


# ---------------------------------------------------------------- the reference
def _reference_loss(config, order, log_eps):
    """The original's loss (docs/quirks.md section 7) as a function of (params, x_nbrs,
    w, eps), written in ``keras.ops`` so that it runs on either backend's kernels (XLA's
    or TensorFlow's) and in the inputs' dtype; rows stacked ``order`` = "column" (the
    original, r = j*B + i) or "sample" (dgg_tf, r = i*Nn + j). ``log_eps``: the epsilon
    inside the logs, as a value no compiler folds. ``ops.sigmoid`` is differentiated
    from its output, s (1 - s), as PyTorch's sigmoid is: exactly 0 once a float32
    output rounds to 1.0."""
    from keras import ops

    def dense(p, name, h):
        return ops.matmul(h, p[f"{name}/W"]) + p[f"{name}/b"]

    def loss(p, x_nbrs, w, eps):
        batch, nn, _ = x_nbrs.shape
        column = order == "column"
        rows = lambda a: ops.reshape(ops.transpose(a, (1, 0, 2)) if column else a,  # noqa
                                     (batch * nn, a.shape[2]))
        back = lambda a: (ops.transpose(ops.reshape(a, (nn, batch, a.shape[1])), (1, 0, 2))  # noqa
                          if column else ops.reshape(a, (batch, nn, a.shape[1])))
        w_rows = ops.reshape(ops.transpose(w) if column else w, (-1,))
        h = rows(x_nbrs)
        for name in ("encoder1", "encoder2", "encoder3"):
            h = ops.maximum(dense(p, name, h), 0.0)
        mean, logvar = dense(p, "encoder4", h), dense(p, "logvar", h)
        z = mean + ops.exp(0.5 * logvar) * rows(eps)
        h = z
        for name in ("decoder1", "decoder2", "decoder3"):
            h = ops.maximum(dense(p, name, h), 0.0)
        xhat = ops.sigmoid(dense(p, "decoder4", h))
        t = rows(ops.repeat(x_nbrs[:, :1, :], nn, axis=1))       # the sample, every column
        recon = ops.sum(t * ops.log(xhat + log_eps) + (1.0 - t) * ops.log((1.0 - xhat) + log_eps),
                        axis=1)
        gamma_mean = ops.softmax(dense(p, "classifier", mean), axis=-1)
        gamma = gamma_mean if config.classifier_input == "mean" else ops.softmax(
            dense(p, "classifier", z), axis=-1)
        source = back(ops.stop_gradient(gamma_mean if config.prior == "code" else gamma))
        if config.prior == "code":
            log_pc = ops.log(ops.einsum("bj,bjk->bk", w, source))
        else:
            num = ops.einsum("bj,bjk->bk", w[:, 1:], source[:, :1] + source[:, 1:])
            pc = num / ops.sum(num, axis=1, keepdims=True)
            log_pc = ops.where(pc > 0, ops.log(ops.where(pc > 0, pc, 1.0)), 0.0)
        log_pc = rows(ops.repeat(log_pc[:, None, :], nn, axis=1))
        var = ops.square(p["gmm/std"])
        c = float(config.gmm_coefficient)
        log_pz = (-c * ops.sum(ops.log(2.0 * np.pi * var), axis=0)
                  - c * ops.sum((ops.square(mean[:, :, None] - p["gmm/mean"][None])
                                 + ops.exp(logvar)[:, :, None]) / var[None], axis=1))
        per_row = (recon + ops.sum(gamma * log_pz, axis=1)
                   + ops.sum(-gamma * ops.log(gamma + log_eps), axis=1)
                   + 0.5 * ops.sum(logvar, axis=1) + ops.sum(gamma * log_pc, axis=1))
        return -ops.sum(w_rows * per_row) / batch
    return loss


@functools.lru_cache(maxsize=None)
def _gradient(preset, order, dtype):
    """(params, *batch) -> gradients of the reference loss on this process's Keras
    backend, compiled once per preset, row order and dtype (the cases share them): JAX
    jit with the epsilon behind an optimisation barrier, or a TensorFlow graph with the
    epsilon in a variable; either way no compiler folds it."""
    import keras

    from dgg_tf.core.config import DGGConfig
    loss = functools.partial(_reference_loss, DGGConfig.preset(preset), order)
    if keras.backend.backend() == "jax":
        import jax
        eps = lambda: jax.lax.optimization_barrier(jax.numpy.asarray(LOG_EPS, dtype))  # noqa
        return jax.jit(jax.grad(lambda p, *batch: loss(eps())(p, *batch)))
    import tensorflow as tf
    eps = tf.Variable(LOG_EPS, dtype=dtype, trainable=False)

    @tf.function
    def grad(params, *batch):
        with tf.GradientTape() as tape:
            tape.watch(list(params.values()))
            value = loss(eps)(params, *batch)
        return dict(zip(params, tape.gradient(value, list(params.values()))))
    return grad


def reference_steps(case, steps, out, dtype="float64", order="column"):
    """The original's step (loss, its gradient, PyTorch's Adam with L2 in the gradient)
    in ``dtype`` from the real start, on this process's Keras backend; float64 needs
    JAX (x64 is turned on here)."""
    import keras
    from keras import ops
    if keras.backend.backend() == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")  # float32 is float32
    from dgg_tf.core.config import DGGConfig
    preset, data = CASES[case]
    config = DGGConfig.preset(preset)
    grad = _gradient(preset, order, dtype)
    params = {k: ops.convert_to_tensor(v, dtype) for k, v in start(config, data).items()}
    m = {k: ops.zeros_like(v) for k, v in params.items()}
    v2 = {k: ops.zeros_like(v) for k, v in params.items()}
    lr, b1, b2, adam_eps, l2 = config.learning_rate, 0.9, 0.999, 1e-8, config.weight_decay
    snapshots = {0: {k: ops.convert_to_numpy(v) for k, v in params.items()}}
    for t, batch in enumerate(batches(config, steps, data), start=1):
        g = grad(params, *(ops.convert_to_tensor(a, dtype) for a in batch))
        for k in params:                    # torch.optim.Adam, weight_decay = L2
            gk = g[k] + l2 * params[k]
            m[k] = b1 * m[k] + (1.0 - b1) * gk
            v2[k] = b2 * v2[k] + (1.0 - b2) * ops.square(gk)
            # the bias corrections as Python floats, as torch computes them; a NumPy
            # float64 here would silently widen a float32 path to float64 under x64
            denom = ops.sqrt(v2[k]) / math.sqrt(1.0 - b2 ** t) + adam_eps
            params[k] = params[k] - (lr / (1.0 - b1 ** t)) * (m[k] / denom)
        assert all(keras.backend.standardize_dtype(v.dtype) == dtype
                   for v in params.values()), "a path changed its dtype"
        if t in SAVED:
            snapshots[t] = {k: ops.convert_to_numpy(v) for k, v in params.items()}
    save(out, snapshots)


# ---------------------------------------------------------------- the comparison
def distance(run, ref, first):
    """Relative distance of a run's parameters from the reference's, in norm over all
    weights, measured against the reference's own move from the start: ||p - p64|| /
    ||p64 - p0||."""
    keys = sorted(ref)
    gap = np.sqrt(sum(np.sum((run[k].astype(np.float64) - ref[k]) ** 2) for k in keys))
    moved = np.sqrt(sum(np.sum((ref[k].astype(np.float64) - first[k]) ** 2) for k in keys))
    return float(gap / moved)


def wrong_way(run, ref, first, lr, share=0.99):
    """Weights that step 1 moved the other way from the reference, among those the
    reference moved by at least ``share`` of the learning rate: (count, up to three
    names). Adam's first step moves a weight by lr * g / (|g| + 1e-8), g the gradient
    plus L2, so 0.99 lr means |g| >= 1e-6, some 20 times the float32 error of a gradient
    entry here (about 5e-8: float32 paths do flip weights whose g is near 1e-8)."""
    count, names = 0, []
    for k in sorted(ref):
        d_ref = ref[k].astype(np.float64) - first[k]
        d_run = run[k].astype(np.float64) - first[k]
        bad = (np.abs(d_ref) >= share * lr) & (np.sign(d_run) != np.sign(d_ref))
        count += int(bad.sum())
        names += [f"{k}{[int(i) for i in where]}" for where in np.argwhere(bad)[:3]]
    return count, names[:3]


# ---------------------------------------------------------------- running the paths
#: The paths: the two Keras backends' ``net.step``, and the reference in float64 and in
#: float32 (``run_paths`` runs them in as few processes as their backends allow).
PATHS = ("tensorflow", "jax", "float64", "float32-column", "float32-sample",
         "float32-column-tf", "float32-sample-tf")
#: The float32 reference paths, the band: the rows stacked as the original or as dgg_tf
#: does, on XLA's kernels or (``-tf``) on TensorFlow's.
BAND = tuple(p for p in PATHS if p.startswith("float32"))


def _backend_of(path):
    """The Keras backend a path's process runs on."""
    return "tensorflow" if path == "tensorflow" or path.endswith("-tf") else "jax"


def run_path(path, case, steps, out):
    """Run one path in this process (the child's side of ``run_paths``)."""
    if path in ("tensorflow", "jax"):
        return keras_steps(case, steps, out)
    dtype, order = path.split("-")[:2] if "-" in path else (path, "column")
    return reference_steps(case, steps, out, dtype, order)


def _file(folder, case, path):
    return os.path.join(folder, f"{case}-{path}.npz")


def run_paths(paths, cases, steps, folder, timeout=900):
    """The paths in as few subprocesses as one Keras backend per process allows (one per
    backend, and JAX's ``net.step`` in one of its own; ``python tests/parity.py PATHS
    CASES STEPS FOLDER``, comma-separated); returns {case: {path: {step: params}}}."""
    import subprocess
    import sys
    groups = {}
    for path in paths:      # a process per backend, but JAX's net.step alone: the JAX
        # reference turns x64 on for its whole process (net.step runs first in its process)
        groups.setdefault("jax-step" if path == "jax" else _backend_of(path), []).append(path)
    for members in groups.values():
        env = {**os.environ, "KERAS_BACKEND": _backend_of(members[0]),
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
                   [ROOT, os.environ.get("PYTHONPATH", "")])}
        env.pop("JAX_ENABLE_X64", None)
        done = subprocess.run([sys.executable, os.path.abspath(__file__), ",".join(members),
                               ",".join(cases), str(steps), folder], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"parity paths {members} failed:\n{done.stderr[-3000:]}")
    return {case: {path: load(_file(folder, case, path)) for path in paths}
            for case in cases}


def summary(runs, lr):
    """{path: {"step S": distance from float64, "wrong-way": (count, examples)}} for every
    path but float64, and the band: the float32 reference paths' largest distance (None
    when no float32 reference path ran, as under ``--paths tensorflow jax``)."""
    ref = runs["float64"]
    table = {}
    for path, run in runs.items():
        if path == "float64":
            continue
        row = {f"step {s}": distance(run[s], ref[s], ref[0]) for s in SAVED}
        row["wrong-way"] = wrong_way(run[1], ref[1], ref[0], lr)
        table[path] = row
    chosen = [p for p in table if p in BAND]
    band = ({f"step {s}": max(table[p][f"step {s}"] for p in chosen) for s in SAVED}
            if chosen else None)
    return table, band


if __name__ == "__main__":
    import sys
    _paths = sys.argv[1].split(",")        # net.step first, as the process starts
    for _path in sorted(_paths, key=lambda p: p not in ("tensorflow", "jax")):
        for _case in sys.argv[2].split(","):
            run_path(_path, _case, int(sys.argv[3]), _file(sys.argv[4], _case, _path))
