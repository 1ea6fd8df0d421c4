"""The JAX program of ``stages.cells``: the training states of C cells of one config
(but ``cells.CELL_VALUES``) stacked along a leading cell axis, stepped by one vmapped,
jit-compiled step, ``steps_per_call`` steps per dispatch (``jax.lax.scan``), with the
cell axis sharded over the devices (``NamedSharding`` on a 1-D mesh).

Per cell the program carries, besides Keras' training state, whether the cell is still
training and where it stopped: a step whose loss or new weights are not finite leaves
the cell's whole state as it was (a select per cell), and the cell stops there.
"""
from __future__ import annotations

import contextlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from keras import ops

from dgg_tf.numerics.graph import similarity_weights_ops
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.optimizers import step_lr
from dgg_tf.numerics.weights import param_variables
from dgg_tf.stages.dgg import compile_dgg, dgg_dataset
from dgg_tf.train.checkpoint import optimizer_arrays, restore_network
from dgg_tf.train.fit import noise_counter, steps_per_epoch

__all__ = ["CellsProgram"]

#: What a non-finite step's code in the carried ``stop`` [epoch, batch, what] means.
WHAT = {1: "loss is not finite at", 2: "weights are not finite after"}


class CellsProgram:
    """C cells of one config in one program: ``run(first, last)`` trains epochs
    first..last-1; ``results()`` the cells' params, histories, stops and optimisers."""

    def __init__(self, configs, x, table, starts, optimizer_states, steps_per_call,
                 devices, numbers, noise_key):
        devices = list(jax.devices() if devices is None else devices)
        self.n = len(configs)
        pad = -self.n % len(devices)       # the cell axis splits evenly: repeat the last
        configs, starts, optimizer_states = (list(a) + [a[-1]] * pad for a in (
            configs, starts, optimizer_states))
        cfg = configs[0]
        warm = max(c.lr_warmup_steps for c in configs)
        self.net = net = compile_dgg(DGGNetwork(cfg.replace(lr_warmup_steps=warm)))
        self.configs, self.k, self.table = configs, int(steps_per_call), table
        self.steps = steps_per_epoch(len(x), cfg.batch_size)
        self.full = len(x) // cfg.batch_size         # steps with a whole batch
        names = {id(v): name for name, v in param_variables(net).items()}
        self.names = [names[id(v)] for v in net.trainable_variables]
        self.lr_index = [i for i, v in enumerate(net.optimizer.variables)
                         if v is net.optimizer._learning_rate][0]
        mesh = Mesh(np.array(devices), ("cells",))
        self.on_cells, self.on_steps = (NamedSharding(mesh, P("cells")),
                                        NamedSharding(mesh, P(None, "cells")))
        everywhere = NamedSharding(mesh, P())
        fresh = optimizer_arrays(net.optimizer)
        state = _stack([_cell_state(net, s, fresh if o is None else o)
                        for s, o in zip(starts, optimizer_states)])
        self.fresh_metrics = state[3]
        c = len(configs)
        self.carry = jax.device_put(
            (state, np.ones(c, bool), np.zeros((c, 3), np.int32)), self.on_cells)
        self.consts = jax.device_put(
            ({k: np.asarray([getattr(g, k) for g in configs], np.float32) for k in numbers},
             np.stack([noise_key(g.seed) for g in configs])), self.on_cells)
        self.data = jax.device_put(
            (np.asarray(x, np.float32),
             np.ascontiguousarray(table[:, :cfg.num_neighbors + 1], np.int32)), everywhere)
        self.histories, self.stopped = [[] for _ in configs], [None] * c
        self._compile(_cell_step(net, cfg, warm > 0), devices[0].platform != "cpu")

    def _compile(self, step, donate):
        """The jitted one-step and k-step programs (the carry donated off the CPU)."""
        cells = jax.vmap(step, in_axes=(0, 0, 0, None, None, 0))

        def one(carry, consts, data, batch):
            return cells(carry, *consts, *data, batch)

        def scan(carry, consts, data, batches):
            return jax.lax.scan(lambda c, b: (one(c, consts, data, b), None), carry,
                                batches)[0]
        donated = (0,) if donate else ()
        self.one = jax.jit(one, donate_argnums=donated)
        self.scan = jax.jit(scan, donate_argnums=donated)

    def run(self, first, last):
        data = [dgg_dataset(self.table, None, c, first, last) for c in self.configs]
        for epoch in range(first, last):
            if all(s is not None for s in self.stopped[:self.n]):
                return
            t0 = time.time()
            self._epoch_start(epoch)
            at = (epoch - first) * self.steps
            s = 0
            while s < self.steps:
                if self.k > 1 and s + self.k <= self.full:
                    batches = _stack([_stack([d[at + s + j] for d in data])
                                      for j in range(self.k)])
                    self.carry = self.scan(self.carry, self.consts, self.data,
                                           jax.device_put(batches, self.on_steps))
                    s += self.k
                else:
                    batch = jax.device_put(_stack([d[at + s] for d in data]), self.on_cells)
                    self.carry = self.one(self.carry, self.consts, self.data, batch)
                    s += 1
            self._epoch_end(epoch, t0)

    def _epoch_start(self, epoch):
        """The epoch's learning rates (``fit``'s scheduler) and fresh step metrics."""
        state, alive, stop = self.carry
        state = [list(g) for g in state]
        self.rates = [step_lr(c.learning_rate, c.lr_gamma, c.lr_step, epoch, c.lr_schedule)
                      for c in self.configs]
        state[2][self.lr_index] = jax.device_put(
            np.asarray(self.rates, state[2][self.lr_index].dtype), self.on_cells)
        state[3] = jax.device_put(self.fresh_metrics, self.on_cells)
        self.carry = (state, alive, stop)

    def _epoch_end(self, epoch, t0):
        """Each cell's epoch record (``EpochRecorder``'s figures, ``seconds`` since
        ``t0`` once the epoch's steps are done), or its stop."""
        state, alive, stop = self.carry
        alive, stop = np.asarray(alive), np.asarray(stop)    # waits for the last step
        seconds = time.time() - t0
        metrics = [np.asarray(a) for a in state[3]]
        net = self.net
        for i, history in enumerate(self.histories):
            if self.stopped[i] is not None:
                continue
            if not alive[i]:
                self.stopped[i] = (f"{WHAT[int(stop[i, 2])]} epoch {stop[i, 0]}, batch "
                                   f"{stop[i, 1]}/{self.steps}; this cell stopped, at the "
                                   f"state of its last finite step")
                continue
            for v, a in zip(net.metrics_variables, metrics):
                v.assign(a[i])
            record = {"epoch": epoch + 1, "lr": self.rates[i]}
            record.update({m.name: float(m.result()) for m in net.step_metrics[:-1]})
            record["seconds"] = seconds
            history.append(record)

    def results(self):
        state = self.carry[0]
        params = [np.asarray(a) for a in state[0]]
        optimizer = [np.asarray(a) for a in state[2]]
        return [{"params": {name: np.array(a[i]) for name, a in zip(self.names, params)},
                 "history": list(self.histories[i]), "stopped": self.stopped[i],
                 "optimizer": [np.array(a[i]) for a in optimizer]} for i in range(self.n)]


def _cell_state(net, start, optimizer):
    """Keras' JAX training state (``backend.Trainer``'s order) of ``net`` with the
    cell's weights and optimiser arrays (``restore_network``: checked), as arrays."""
    restore_network(net, start, optimizer, source="train_cells")
    return [[np.asarray(v.value) for v in vs] for vs in (
        net.trainable_variables, net.non_trainable_variables,
        net.optimizer.variables, net.metrics_variables)]


def _stack(trees):
    """The trees, stacked along a new leading axis."""
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *trees)


class _CellConfig:
    """The program's config with a cell's numeric settings (traced scalars) in place of
    its numbers: what the step reads as ``net.config`` while it is traced."""

    def __init__(self, config, values):
        self._config, self._values = config, values

    def __getattr__(self, name):
        values = self.__dict__["_values"]
        return values[name] if name in values else getattr(self.__dict__["_config"], name)


@contextlib.contextmanager
def _reading(net, config, warmup_steps):
    """``net`` reads ``config`` and its optimiser ``warmup_steps`` while a step is traced."""
    saved = net.config, net.optimizer.warmup_steps
    net.config, net.optimizer.warmup_steps = config, warmup_steps
    try:
        yield
    finally:
        net.config, net.optimizer.warmup_steps = saved


def _cell_step(net, cfg, warm):
    """The pure step of one cell, ``(carry, values, key, x, table, batch) -> carry``:
    the batch gathered and its noise drawn as ``BatchFeed.assemble`` does, the network's
    own ``train_step`` with the cell's numbers, then the non-finite stop."""
    nn, m = cfg.num_neighbors + 1, cfg.latent_dim

    def step(carry, values, key, x, table, batch):
        state, alive, stop = carry
        cell = _CellConfig(cfg, values)
        neighbors = ops.take(table, batch["index"], axis=0)
        x_nbrs = ops.take(x, neighbors, axis=0)
        sigma_row = None
        if "sigma_index" in batch:
            sigma_row = ops.take(x, ops.take(table, batch["sigma_index"][0], axis=0), axis=0)
        w = similarity_weights_ops(x_nbrs, cell.sigma, cfg.similarity, cfg.sigma_mode,
                                   sigma_row)
        counter = noise_counter(batch["epoch"][0], batch["step"][0])
        eps = jax.random.normal(jax.random.fold_in(jax.random.key(key), counter),
                                (neighbors.shape[0], nn, m), "float32")
        eps = ops.take(eps, batch["row"], axis=0)
        with _reading(net, cell, values["lr_warmup_steps"] if warm else 0):
            logs, new = net.train_step(state, (x_nbrs, w, eps))
        new = [list(g) for g in new]
        loss_ok = jnp.isfinite(logs["loss"])
        ok = loss_ok & jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in new[0]]))
        keep = alive & ok
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state)
        where = jnp.stack([batch["epoch"][0] + 1, batch["step"][0] + 1,
                           jnp.where(loss_ok, 2, 1)]).astype(jnp.int32)
        return new, keep, jnp.where(alive & ~ok, where, stop)
    return step
