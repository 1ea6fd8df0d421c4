"""Cells as an axis: C cells of the DGG stage trained at once (issue 27, item 1).

A cell is one DGG training run: its own starting weights (the stages before it, GMM
init and classifier pretraining, come per cell as weights), its own seed (batch order
and noise) and its own ``learning_rate``. On JAX the cells' states (weights, optimiser
state, step metrics) are stacked along a leading cell axis, and the network's own pure
step (``DGGNetwork.train_step(state, data)``, the one ``fit`` runs) is mapped over them
with ``jax.vmap`` and jit-compiled: one program steps every cell. Each cell's batch is
gathered in the same program from its own index batch (``dgg_dataset`` of its seed) and
its noise drawn from its own key, by the same operations as ``BatchFeed.assemble``, so
cell i computes what the cell run alone through ``fit_dgg`` computes.

What may differ per cell inside one program: the seed and ``learning_rate`` (a value of
the optimiser's state). Every other setting (``gmm_coefficient``, ``sigma``,
``lr_warmup_steps``, ``reconstruction_scale``, and the structural switches ``prior``,
``similarity``, ``sigma_mode``, ``classifier_input``...) is read by the step as a Python
constant, so ``train_cells`` splits the cells into one program per distinct config (the
simpler choice: the single-cell step stays untouched). On TensorFlow the cells run one
after another through ``fit_dgg``.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.graph import similarity_weights_ops
from dgg_tf.numerics.models import STEP_MEANS, DGGNetwork
from dgg_tf.numerics.optimizers import step_lr
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.dgg import compile_dgg, dgg_dataset, fit_dgg
from dgg_tf.train.fit import steps_per_epoch

__all__ = ["train_cells", "noise_key"]

#: What a cell may set apart from its program's config, as data.
CELL_VALUES = ("seed", "learning_rate")


def noise_key(seed, salt=1):
    """The integer key of ``train.fit.batch_noise`` for ``seed``, as the uint32 that
    ``backend.normal`` reduces it to: a cell's noise key, passed as data."""
    return np.uint32((int(seed) * 1_000_003 + salt) % 2 ** 32)


def train_cells(config: DGGConfig, x, table, starts, cells, epochs=None):
    """Train len(cells) DGG cells on checked inputs (float32 x, integer table) and return
    one result per cell, in order: ``{"params", "history", **cell}``, ``history`` a list of
    ``{"epoch", "loss"}`` (the epoch's mean step loss, as ``fit_dgg`` records it).

    ``starts``: one weights dict per cell (``get_params`` names). ``cells``: one dict per
    cell with any of ``CELL_VALUES`` and other config fields; cells whose configs agree
    apart from ``CELL_VALUES`` share one program on JAX."""
    configs = [config.replace(**c) for c in cells]
    results = [None] * len(cells)
    for members in _programs(configs).values():
        train = _train_vmapped if keras.backend.backend() == "jax" else _train_one_by_one
        done = train([configs[i] for i in members], x, table, [starts[i] for i in members],
                     epochs)
        for i, r in zip(members, done):
            results[i] = {**cells[i], **r}
    return results


def _programs(configs):
    """{program key: [cell indices]}: cells agree on everything but ``CELL_VALUES``."""
    groups = {}
    for i, c in enumerate(configs):
        key = c.replace(**{k: getattr(configs[0], k) for k in CELL_VALUES})
        groups.setdefault(key, []).append(i)
    return groups


def _train_one_by_one(configs, x, table, starts, epochs):
    """The existing single-cell path, cell after cell (TensorFlow)."""
    out = []
    for cfg, start in zip(configs, starts):
        net = compile_dgg(DGGNetwork(cfg))
        set_params(net, start)
        history = fit_dgg(net, x, table, epochs=epochs, verbose=0)
        out.append({"params": get_params(net),
                    "history": [{"epoch": r["epoch"], "loss": r["loss"]} for r in history]})
    return out


# ---------------------------------------------------------------- JAX: one program
def _state(net):
    """Keras' JAX training state of ``net`` (``backend.Trainer``'s order), as arrays."""
    return [[np.asarray(v.value) for v in vs] for vs in (
        net.trainable_variables, net.non_trainable_variables,
        net.optimizer.variables, net.metrics_variables)]


def _stack(states):
    """The cells' states, stacked along a leading cell axis."""
    import jax
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *states)


def _cell_step(net, cfg):
    """The pure step of one cell: ``(state, x, table, batch, key) -> (state, loss)``: the
    batch gathered and its noise drawn as ``BatchFeed.assemble`` does, then the network's
    own ``train_step``."""
    import jax
    nn, m = cfg.num_neighbors + 1, cfg.latent_dim

    def step(state, x, table, batch, key):
        neighbors = ops.take(table, batch["index"], axis=0)
        x_nbrs = ops.take(x, neighbors, axis=0)
        sigma_row = None
        if "sigma_index" in batch:
            sigma_row = ops.take(x, ops.take(table, batch["sigma_index"][0], axis=0), axis=0)
        w = similarity_weights_ops(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode,
                                   sigma_row)
        counter = ops.cast(batch["epoch"][0], "int32") * 1_000_003 + \
            ops.cast(batch["step"][0], "int32")
        eps = jax.random.normal(jax.random.fold_in(jax.random.key(key), counter),
                                (neighbors.shape[0], nn, m), "float32")
        eps = ops.take(eps, batch["row"], axis=0)
        logs, state = net.train_step(state, (x_nbrs, w, eps))
        return state, logs["loss"]
    return step


def _train_vmapped(configs, x, table, starts, epochs):
    """Cells of one config (but seed and learning rate) through one vmapped program."""
    import jax
    cfg = configs[0]
    epochs = cfg.epochs if epochs is None else epochs
    net = compile_dgg(DGGNetwork(cfg))
    lr_index = [i for i, v in enumerate(net.optimizer.variables)
                if v is net.optimizer._learning_rate][0]
    loss_metric = net.step_metrics[STEP_MEANS.index("loss")]
    states = []
    for start in starts:
        set_params(net, start)
        states.append(_state(net))
    state = _stack(states)
    fresh_metrics = state[3]
    keys = np.stack([noise_key(c.seed) for c in configs])
    run = jax.jit(jax.vmap(_cell_step(net, cfg), in_axes=(0, None, None, 0, 0)))
    data = [dgg_dataset(table, None, c, 0, epochs) for c in configs]
    steps = steps_per_epoch(len(x), cfg.batch_size)
    x, table = jax.numpy.asarray(x), jax.numpy.asarray(table[:, :cfg.num_neighbors + 1])
    histories = [[] for _ in configs]
    for epoch in range(epochs):
        state[2][lr_index] = np.asarray(
            [step_lr(c.learning_rate, c.lr_gamma, c.lr_step, epoch, c.lr_schedule)
             for c in configs], np.float32)
        state[3] = fresh_metrics                 # fit resets the metrics every epoch
        for s in range(steps):
            batch = _stack([d[epoch * steps + s] for d in data])
            state, _ = run(state, x, table, batch, keys)
        state = [list(group) for group in state]
        for i, history in enumerate(histories):
            _assign(net.metrics_variables, [a[i] for a in state[3]])
            history.append({"epoch": epoch + 1, "loss": float(loss_metric.result())})
    out = []
    for i, history in enumerate(histories):
        _assign(net.trainable_variables, [a[i] for a in state[0]])
        out.append({"params": get_params(net), "history": history})
    return out


def _assign(variables, values):
    for v, a in zip(variables, values):
        v.assign(a)
