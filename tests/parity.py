"""The DGG step on real data against a float64 run of the original's formula.

Pieces, each run in its own process (a process has one Keras backend, and the float64
reference needs JAX's x64 mode, which is global):

- ``start()``: the real start: the shipped autoencoder (pretrained/mnist_ae.h5), the
  GMM init and pretrained classifier f2 of full MNIST (tests/data/mnist_start.npz, made
  by ``make_start``), and the log-variance head in PyTorch's default init (seeded);
- ``batches(preset, steps)``: real MNIST batches from the shipped neighbour table, their
  graph weights, and seeded noise;
- ``keras_steps``: ``net.step`` on the Keras backend of the process (what is tested);
- ``reference_steps``: the original's step written from its formula (docs/quirks.md,
  section 7) in ``jax.numpy``, independent of dgg_tf's numerics: float64 throughout (the
  reference), or float32 with the rows in either order (the original stacks column by
  column, r = j * B + i; dgg_tf sample by sample, r = i * Nn + j): two float32 paths
  that differ only in reduction order, whose distance from float64 is the float32
  rounding band;
- ``compare``: distances from the float64 run after each saved step.

Every path saves the parameters after steps ``SAVED`` as float32 .npz.
``benchmarks/real_data_parity.py`` runs the whole check and prints it.
"""
from __future__ import annotations

import functools
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START = os.path.join(ROOT, "tests", "data", "mnist_start.npz")
AUTOENCODER = os.path.join(ROOT, "pretrained", "mnist_ae.h5")
TABLE = os.path.join(ROOT, "pretrained", "mnist_neighbors.npz")
MNIST = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")
SAVED = (1, 5)          # steps after which the parameters are saved
LOG_EPS = 1e-10         # the original's epsilon inside log(xhat), log(1 - xhat), log(gamma)


def mnist_path():
    return os.environ.get("DGG_MNIST", MNIST)


# ---------------------------------------------------------------- the start and the data
def make_start(out=START, seed=0):
    """GMM init (K-means, 10 restarts) and f2 pretrained 30 epochs on the shipped
    autoencoder's encoder means of full MNIST, as ``pipeline.run_dgg`` starts; saved with
    its provenance. Run once (TensorFlow, 2 cores: about 2 minutes)."""
    from dgg_tf.config import DGGConfig
    from dgg_tf.data import load_mnist
    from dgg_tf.initialise import init_gmm, pretrain_classifier
    from dgg_tf.models import DGGNetwork, encode_mean
    from dgg_tf.weights import get_params, load_autoencoder, set_params
    import keras
    keras.utils.set_random_seed(seed)
    config = DGGConfig.preset("code", seed=seed)
    x, y = load_mnist(mnist_path())
    net = DGGNetwork(config)
    set_params(net, load_autoencoder(AUTOENCODER, config)[0], partial=True)
    report = init_gmm(net, x, y, config)
    history = pretrain_classifier(net, encode_mean(net, x), report["kmeans_labels"], config,
                                  labels_true=y, seed=seed)
    params = get_params(net)
    keep = {k: params[k] for k in ("gmm/mean", "gmm/std", "classifier/W", "classifier/b")}
    provenance = (f"tests/parity.py make_start(seed={seed}): shipped mnist_ae.h5, full MNIST "
                  f"(70000), K-means n_init={config.kmeans_n_init} (ACC "
                  f"{report['kmeans_acc']:.4f}), f2 {config.classifier_epochs} epochs "
                  f"{config.classifier_pretrain_loss} (ACC {history[-1].get('acc', float('nan')):.4f})"
                  f", keras backend {keras.backend.backend()}")
    tmp = out + ".tmp.npz"
    np.savez(tmp, provenance=provenance, **keep)
    os.replace(tmp, out)
    return provenance


def start(config, seed=0):
    """The real start as a float32 params dict of every DGG weight."""
    from dgg_tf.weights import load_autoencoder
    params = dict(load_autoencoder(AUTOENCODER, config)[0])
    with np.load(START) as saved:
        params.update({k: saved[k] for k in saved.files if k != "provenance"})
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(config.encoder_dims[-1])      # PyTorch's nn.Linear default init
    params["logvar/W"] = rng.uniform(-bound, bound, (config.encoder_dims[-1], config.latent_dim))
    params["logvar/b"] = rng.uniform(-bound, bound, config.latent_dim)
    return {k: np.asarray(v, np.float32) for k, v in params.items()}


@functools.lru_cache(maxsize=None)
def batches(config, steps, seed=0):
    """``steps`` real batches (x_nbrs [B, Nn, D], w [B, Nn], eps [B, Nn, M]), float32."""
    from dgg_tf.graph import similarity_weights
    x = _mnist()
    with np.load(TABLE) as t:
        table = t["table"][:, :config.num_neighbors + 1]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    out = []
    for s in range(steps):
        rows = order[s * config.batch_size:(s + 1) * config.batch_size]
        x_nbrs = x[table[rows]]
        w = similarity_weights(x_nbrs, config.sigma, config.similarity, config.sigma_mode)
        eps = rng.standard_normal((*x_nbrs.shape[:2], config.latent_dim)).astype(np.float32)
        out.append((x_nbrs, w, eps))
    return out


@functools.lru_cache(maxsize=1)
def _mnist():
    from dgg_tf.data import load_mnist
    return load_mnist(mnist_path())[0]


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
def keras_steps(preset, steps, out):
    """``net.step`` on this process's Keras backend from the real start."""
    from dgg_tf.config import DGGConfig
    from dgg_tf.models import DGGNetwork
    from dgg_tf.training import compile_dgg
    from dgg_tf.weights import get_params, set_params
    config = DGGConfig.preset(preset)
    net = compile_dgg(DGGNetwork(config))
    set_params(net, start(config))
    snapshots = {0: get_params(net)}
    for s, batch in enumerate(batches(config, steps), start=1):
        logs = net.step(batch)
        if not np.isfinite(float(logs["loss"])):
            raise FloatingPointError(f"{preset}: loss not finite at step {s}")
        if s in SAVED:
            snapshots[s] = get_params(net)
    save(out, snapshots)


# ---------------------------------------------------------------- the reference
def _reference_loss(jnp, lax, dtype, config, order):
    """The original's loss (docs/quirks.md section 7) as a function of (params, x_nbrs,
    w, eps) in ``dtype``; rows stacked ``order`` = "column" (the original, r = j*B + i)
    or "sample" (dgg_tf, r = i*Nn + j)."""
    def dense(p, name, h):
        return h @ p[f"{name}/W"] + p[f"{name}/b"]

    def softmax(a):
        e = jnp.exp(a - a.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def loss(p, x_nbrs, w, eps):
        batch, nn, _ = x_nbrs.shape
        # the epsilon as an opaque value, so that XLA keeps log((1 - xhat) + eps) as written
        log_eps = lax.optimization_barrier(jnp.asarray(LOG_EPS, dtype))
        axes = (1, 0, 2) if order == "column" else (0, 1, 2)
        rows = lambda a: jnp.transpose(a, axes[:a.ndim]).reshape(batch * nn, *a.shape[2:])  # noqa
        x_rows, e_rows = rows(x_nbrs), rows(eps)
        w_rows = jnp.transpose(w).reshape(-1) if order == "column" else w.reshape(-1)
        sample = (jnp.tile(jnp.arange(batch), nn) if order == "column"
                  else jnp.repeat(jnp.arange(batch), nn))
        h = x_rows
        for name in ("encoder1", "encoder2", "encoder3"):
            h = jnp.maximum(dense(p, name, h), 0.0)
        mean, logvar = dense(p, "encoder4", h), dense(p, "logvar", h)
        z = mean + jnp.exp(0.5 * logvar) * e_rows
        h = z
        for name in ("decoder1", "decoder2", "decoder3"):
            h = jnp.maximum(dense(p, name, h), 0.0)
        xhat = 1.0 / (1.0 + jnp.exp(-dense(p, "decoder4", h)))      # torch.sigmoid
        t = x_nbrs[:, 0, :][sample]
        recon = jnp.sum(t * jnp.log(xhat + log_eps) + (1.0 - t) * jnp.log((1.0 - xhat) + log_eps),
                        axis=1)
        gamma_mean = softmax(dense(p, "classifier", mean))
        gamma = gamma_mean if config.classifier_input == "mean" else softmax(
            dense(p, "classifier", z))
        source = lax.stop_gradient(gamma_mean if config.prior == "code" else gamma)
        by_sample = jnp.zeros((batch, nn, source.shape[1]), dtype)
        by_sample = by_sample.at[sample, jnp.tile(jnp.arange(nn), batch) if order == "sample"
                                 else jnp.repeat(jnp.arange(nn), batch)].set(source)
        if config.prior == "code":
            pc = jnp.einsum("bj,bjk->bk", w, by_sample)
            log_pc = jnp.log(pc)
        else:
            num = jnp.einsum("bj,bjk->bk", w[:, 1:], by_sample[:, :1] + by_sample[:, 1:])
            pc = num / num.sum(axis=1, keepdims=True)
            log_pc = jnp.where(pc > 0, jnp.log(jnp.where(pc > 0, pc, 1.0)), 0.0)
        var = jnp.square(p["gmm/std"])
        c = float(config.gmm_coefficient)
        log_pz = (-c * jnp.sum(jnp.log(2.0 * np.pi * var), axis=0)
                  - c * jnp.sum((jnp.square(mean[:, :, None] - p["gmm/mean"][None])
                                 + jnp.exp(logvar)[:, :, None]) / var[None], axis=1))
        per_row = (recon + jnp.sum(gamma * log_pz, axis=1)
                   + jnp.sum(-gamma * jnp.log(gamma + log_eps), axis=1)
                   + 0.5 * jnp.sum(logvar, axis=1) + jnp.sum(gamma * log_pc[sample], axis=1))
        return -jnp.sum(w_rows * per_row) / batch
    return loss


def reference_steps(preset, steps, out, dtype="float64", order="column"):
    """The original's step (loss, its gradient, PyTorch's Adam with L2 in the gradient)
    in ``dtype`` from the real start; needs JAX with x64 enabled for float64."""
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")   # float32 is float32 (GPU)
    import jax.numpy as jnp
    from dgg_tf.config import DGGConfig
    config = DGGConfig.preset(preset)
    loss = _reference_loss(jnp, jax.lax, dtype, config, order)
    grad = jax.jit(jax.grad(loss))
    params = {k: jnp.asarray(v, dtype) for k, v in start(config).items()}
    m = {k: jnp.zeros_like(v) for k, v in params.items()}
    v2 = {k: jnp.zeros_like(v) for k, v in params.items()}
    lr, b1, b2, adam_eps, l2 = config.learning_rate, 0.9, 0.999, 1e-8, config.weight_decay
    snapshots = {0: {k: np.asarray(v) for k, v in params.items()}}
    for t, batch in enumerate(batches(config, steps), start=1):
        g = grad(params, *(jnp.asarray(a, dtype) for a in batch))
        for k in params:                    # torch.optim.Adam, weight_decay = L2
            gk = g[k] + l2 * params[k]
            m[k] = b1 * m[k] + (1.0 - b1) * gk
            v2[k] = b2 * v2[k] + (1.0 - b2) * jnp.square(gk)
            denom = jnp.sqrt(v2[k]) / np.sqrt(1.0 - b2 ** t) + adam_eps
            params[k] = params[k] - (lr / (1.0 - b1 ** t)) * m[k] / denom
        if t in SAVED:
            snapshots[t] = {k: np.asarray(v) for k, v in params.items()}
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
#: The paths, each run in a process of its own: the two Keras backends' ``net.step``, and
#: the reference in float64 and in float32 with the rows in either order.
PATHS = ("tensorflow", "jax", "float64", "float32-column", "float32-sample")


def run_path(path, preset, steps, out):
    """Run one path in this process (the child's side of ``run_paths``)."""
    if path in ("tensorflow", "jax"):
        return keras_steps(preset, steps, out)
    dtype, _, order = path.partition("-")
    return reference_steps(preset, steps, out, dtype, order or "column")


def _file(folder, preset, path):
    return os.path.join(folder, f"{preset}-{path}.npz")


def run_paths(paths, presets, steps, folder, timeout=900):
    """The paths in as few subprocesses as one Keras backend per process allows (the
    reference paths share one; ``python tests/parity.py PATHS PRESETS STEPS FOLDER``,
    comma-separated); returns {preset: {path: {step: params}}}."""
    import subprocess
    import sys
    groups = {}
    for path in paths:
        groups.setdefault("tensorflow" if path == "tensorflow" else
                          "jax" if path == "jax" else "reference", []).append(path)
    for group, members in groups.items():
        env = {**os.environ, "KERAS_BACKEND": "tensorflow" if group == "tensorflow" else "jax",
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(
                   [ROOT, os.environ.get("PYTHONPATH", "")])}
        env.pop("JAX_ENABLE_X64", None)
        done = subprocess.run([sys.executable, os.path.abspath(__file__), ",".join(members),
                               ",".join(presets), str(steps), folder], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"parity paths {members} failed:\n{done.stderr[-3000:]}")
    return {preset: {path: load(_file(folder, preset, path)) for path in paths}
            for preset in presets}


def summary(runs, lr):
    """{path: {"step S": distance from float64, "wrong-way": (count, examples)}} for every
    path but float64, and the band: the float32 reference paths' largest distance."""
    ref = runs["float64"]
    table = {}
    for path, run in runs.items():
        if path == "float64":
            continue
        row = {f"step {s}": distance(run[s], ref[s], ref[0]) for s in SAVED}
        row["wrong-way"] = wrong_way(run[1], ref[1], ref[0], lr)
        table[path] = row
    band = {f"step {s}": max(table[p][f"step {s}"] for p in table if p.startswith("float32"))
            for s in SAVED}
    return table, band


if __name__ == "__main__":
    import sys
    for _preset in sys.argv[2].split(","):
        for _path in sys.argv[1].split(","):
            run_path(_path, _preset, int(sys.argv[3]), _file(sys.argv[4], _preset, _path))
