"""Cells as an axis: C cells of the DGG stage trained at once (issue 27, items 1-2).

A cell is one DGG training run: its own starting weights (the stages before it, GMM
init and classifier pretraining, come per cell as weights), its own seed (batch order
and noise) and its own numeric settings. On JAX the cells' states (weights, optimiser
state, step metrics) are stacked along a leading cell axis, and the network's own pure
step (``DGGNetwork.train_step(state, data)``, the one ``fit`` runs) is mapped over them
with ``jax.vmap`` and jit-compiled: one program steps every cell
(``stages.cells_program``). Each cell's batch is gathered in the same program from its
own index batch (``dgg_dataset`` of its seed) and its noise drawn from its own key, by
the same operations as ``BatchFeed.assemble``, so cell i computes what the cell run
alone through ``fit_dgg`` computes. On TensorFlow the cells run one after another
through ``fit_dgg``.

Per cell, as data inside one program (``CELL_VALUES``): the seed, ``learning_rate``
(a value of the optimiser's state), and ``gmm_coefficient``, ``sigma``,
``reconstruction_scale``, ``lr_warmup_steps`` (``NUMBERS``: traced scalars that the
step reads where it read the config's Python numbers; nothing branches on them in
Python: ``lr_warmup_steps`` = 0 multiplies the rate by exactly 1 in a program where
another cell warms up). The structural switches (``prior``, ``similarity``,
``sigma_mode``, ``classifier_input``, ``likelihood``...) change the traced computation:
cells that differ in them run as one program per value. Measured against "compute both,
select" (``benchmarks/cells_probe.py --switch 4``: prior code/paper over 4 cells, 784-250-
250-500-10, AMD EPYC 2 cores, loaded): two programs of 2 took 84-120 ms a cell-step, one
program of 4 computing both priors 98-127 ms, one prior alone 90-95 ms (docs/speed.md).
Select buys nothing on this CPU and would put traced switches into the single-cell
step's code, so the switches split.

A cell whose step loss or weights go non-finite stops: inside the program its state
stays that of its last finite step (a select per cell), the other cells go on, and
its result says where (``"stopped"``). ``on_epoch`` sees the cells after every epoch (on
TensorFlow, each cell after each of its epochs); ``initial_epoch`` with
``optimizer_states`` resumes cells as ``fit_dgg`` resumes a checkpoint
(``train.checkpoint.restore_network``). Several accelerators: the cell axis is sharded
over them (``devices``). ``steps_per_call``: k steps per dispatch
(``jax.lax.scan``).
"""
from __future__ import annotations

import keras
import numpy as np

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.dgg import compile_dgg, fit_dgg
from dgg_tf.train import fit
from dgg_tf.train.callbacks import TrainingError
from dgg_tf.train.checkpoint import optimizer_arrays, restore_network

__all__ = ["train_cells", "noise_key", "CELL_VALUES", "NUMBERS"]

#: Numeric settings a cell may set apart inside one program (traced per-cell scalars).
NUMBERS = ("gmm_coefficient", "sigma", "reconstruction_scale", "lr_warmup_steps")
#: What a cell may set apart from its program's config, as data.
CELL_VALUES = ("seed", "learning_rate") + NUMBERS


def noise_key(seed, salt=1):
    """The integer key of ``train.fit.batch_noise`` for ``seed``, as the uint32 that
    ``backend.normal`` reduces it to: a cell's noise key, passed as data."""
    return np.uint32(fit.noise_key(seed, salt) % 2 ** 32)


def train_cells(config: DGGConfig, x, table, starts, cells, epochs=None, *, on_epoch=None,
                initial_epoch=0, optimizer_states=None, steps_per_call=1, devices=None):
    """Train len(cells) DGG cells on checked inputs (float32 x, integer table) and return
    one result per cell, in order: ``{**cell, "params", "history", "stopped",
    "optimizer"}``: ``history`` a list of epoch records (``epoch``, ``loss``, ``lr``, the
    step means, as ``fit_dgg`` records them), ``stopped`` None or why the cell stopped,
    ``optimizer`` its optimiser arrays (``checkpoint.optimizer_arrays`` order).

    ``starts``: one weights dict per cell (``get_params`` names). ``cells``: one dict per
    cell with any of ``CELL_VALUES`` and other config fields; cells whose configs agree
    apart from ``CELL_VALUES`` share one program on JAX. ``on_epoch(epoch, results)``
    (epoch from 1): on JAX after every epoch, with every cell's result so far; on
    TensorFlow, where the cells train one after another, each through all its epochs in
    one ``fit`` (a ``fit`` per epoch would trace the step again every epoch: 1-3 s at
    the paper's sizes), after each epoch of each cell, with that cell's result and None
    for the others, and once more for a cell that stops. Resuming: epochs
    ``initial_epoch``..``epochs``-1, each cell from ``starts[i]`` and
    ``optimizer_states[i]`` (None: a fresh optimiser). ``steps_per_call`` and ``devices``
    (default: all of JAX's) are JAX's; TensorFlow ignores them."""
    configs = _check(config, starts, cells, optimizer_states, steps_per_call, initial_epoch)
    last = [c.epochs if epochs is None else int(epochs) for c in configs]
    optimizer_states = optimizer_states or [None] * len(cells)
    programs = []
    for members in _programs(configs, last).values():
        make = _JaxProgram if keras.backend.backend() == "jax" else _OneByOne
        programs.append((members, last[members[0]], make(
            [configs[i] for i in members], x, table, [starts[i] for i in members],
            [optimizer_states[i] for i in members], steps_per_call, devices)))
    if on_epoch is None:
        for _, end, program in programs:
            program.run(initial_epoch, end)
    elif keras.backend.backend() != "jax":
        for members, end, program in programs:
            program.run(initial_epoch, end, lambda i, epoch, members=members, program=program:
                        on_epoch(epoch, _only(cells, members[i], program.result(i))))
    else:
        for epoch in range(initial_epoch, max(last, default=0)):
            for _, end, program in programs:
                if epoch < end:
                    program.run(epoch, epoch + 1)
            on_epoch(epoch + 1, _collect(cells, programs))
    return _collect(cells, programs)


def _check(config, starts, cells, optimizer_states, steps_per_call, initial_epoch):
    """The cells' configs, after a clear error for arguments that do not fit."""
    if len(starts) != len(cells):
        raise ValueError(f"train_cells: {len(starts)} starts for {len(cells)} cells")
    if optimizer_states is not None and len(optimizer_states) != len(cells):
        raise ValueError(f"train_cells: {len(optimizer_states)} optimizer states for "
                         f"{len(cells)} cells")
    if int(steps_per_call) != steps_per_call or steps_per_call < 1:
        raise ValueError(f"train_cells: steps_per_call must be an integer >= 1, got "
                         f"{steps_per_call!r}")
    if int(initial_epoch) != initial_epoch or initial_epoch < 0:
        raise ValueError(f"train_cells: initial_epoch must be an integer >= 0, got "
                         f"{initial_epoch!r}")
    return [config.replace(**c) for c in cells]


def _programs(configs, last):
    """{program key: [cell indices]}: cells agree on everything but ``CELL_VALUES``."""
    groups = {}
    for i, c in enumerate(configs):
        key = (c.replace(**{k: getattr(configs[0], k) for k in CELL_VALUES}), last[i])
        groups.setdefault(key, []).append(i)
    return groups


def _only(cells, index, result):
    """``on_epoch``'s results with one cell's: None for every other cell."""
    results = [None] * len(cells)
    results[index] = {**cells[index], **result}
    return results


def _collect(cells, programs):
    """Every cell's result so far, in the order of ``cells``."""
    results = [None] * len(cells)
    for members, _, program in programs:
        for i, r in zip(members, program.results()):
            results[i] = {**cells[i], **r}
    return results


class _OneByOne:
    """The existing single-cell path, cell after cell (TensorFlow): one compiled
    network per cell, trained by ``fit_dgg``; a cell whose loss goes non-finite stops
    there (``NonFiniteStop``'s message) and the others go on."""

    def __init__(self, configs, x, table, starts, optimizer_states, steps_per_call, devices):
        self.x, self.table = x, table
        self.nets, self.histories, self.stopped = [], [[] for _ in configs], [None] * len(configs)
        for cfg, start, opt in zip(configs, starts, optimizer_states):
            net = compile_dgg(DGGNetwork(cfg))
            if opt is None:
                set_params(net, start)
            else:
                restore_network(net, start, opt, source="train_cells")
            self.nets.append(net)

    def run(self, first, last, on_cell_epoch=None):
        """Each cell through epochs ``first``..``last``-1 in one fit;
        ``on_cell_epoch(i, epoch)`` after each epoch of cell i, and when it stops."""
        for i, net in enumerate(self.nets):
            if self.stopped[i] is not None:
                continue
            each = [] if on_cell_epoch is None else [keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs, i=i: on_cell_epoch(i, epoch + 1))]
            try:
                fit_dgg(net, self.x, self.table, history=self.histories[i],
                        initial_epoch=first, epochs=last, verbose=0, callbacks=each)
            except TrainingError as e:
                self.stopped[i] = str(e)
                if on_cell_epoch is not None:
                    on_cell_epoch(i, first + len(self.histories[i]) + 1)

    def result(self, i):
        net = self.nets[i]
        return {"params": get_params(net), "history": list(self.histories[i]),
                "stopped": self.stopped[i], "optimizer": optimizer_arrays(net.optimizer)}

    def results(self):
        return [self.result(i) for i in range(len(self.nets))]


def _JaxProgram(*args):
    from dgg_tf.stages.cells_program import CellsProgram  # lazy: JAX only (jax imports)
    return CellsProgram(*args, NUMBERS, noise_key)
