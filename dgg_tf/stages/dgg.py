"""DGG training (section 7) through ``fit``, with the original's schedule and
evaluation as callbacks. What comes before it (GMM init, classifier pretraining) is
``initialise``.

Batches are gathered per step from the (N, 1 + neighbours) index table, on the device:
the original's N x 784 x 21 stacked tensor is never built.
"""
from __future__ import annotations

import resource
import time

import keras
import numpy as np
from keras import ops

from dgg_tf import backend
from dgg_tf.core.config import SIGMA_ROW, DGGConfig
from dgg_tf.core.inputs import check_batches, check_data, check_labels
from dgg_tf.core.tables import check_table, columns_needed
from dgg_tf.numerics.evaluation import full_pass_scores
from dgg_tf.numerics.graph import needs_distances, similarity_weights_ops
from dgg_tf.numerics.models import DGGNetwork, encode_mean
from dgg_tf.numerics.objective import TERMS
from dgg_tf.numerics.optimizers import TorchAdam, step_lr
from dgg_tf.numerics.step_metrics import Contingency
from dgg_tf.train.callbacks import NonFiniteStop, StopWhenAsked, TrainingError
from dgg_tf.train.fit import batch_noise, index_batches, step_lr_callback, steps_per_epoch

__all__ = ["TrainingError", "DGGNetwork", "compile_dgg", "train_dgg", "dgg_dataset", "encode"]


# ---------------------------------------------------------------- encoding
encode = encode_mean  # encoder means of all rows, in batches (models.encode_mean)


# ---------------------------------------------------------------- DGG training (section 7)
def compile_dgg(net: DGGNetwork, config: DGGConfig = None, steps_per_execution=1):
    """Compile ``net`` with the original's optimiser: PyTorch's Adam with L2 added to the
    gradient. On TensorFlow not XLA-compiled as a whole (``backend.JIT_COMPILE``): the
    step keeps the kernels, and so the float32 rounding, of the step the replay check
    compares; on JAX the step is one jit-compiled program."""
    config = config or net.config
    net.compile(optimizer=TorchAdam(config.learning_rate, l2=config.weight_decay,
                                    warmup_steps=config.lr_warmup_steps),
                jit_compile=backend.JIT_COMPILE, steps_per_execution=steps_per_execution)
    net.optimizer.build(net.trainable_variables)   # its state can be restored before fit
    return net


class BatchFeed(keras.layers.Layer):
    """What ``fit``'s steps read on the device: the data x and the neighbour table, from
    which each batch's rows are gathered (``backend.device_array``: no copy per step;
    on JAX, variables of the training state), the graph weights' settings, the noise,
    and the running (cluster, label) counts of the epoch. A layer of the network while
    ``fit_dgg`` runs, and removed after it (it is never saved)."""

    def __init__(self, x, table, config: DGGConfig, n_classes=None):
        super().__init__(name="feed", trainable=False)
        self.config = config
        nn = columns_needed(config.num_neighbors)
        columns = np.ascontiguousarray(np.asarray(table)[:, :nn], dtype=np.int32)
        self.x = backend.device_array(self, "x", np.asarray(x, np.float32))
        self.table = backend.device_array(self, "table", columns)
        self.running = (Contingency(config.n_clusters, n_classes, "running")
                        if n_classes else None)
        self.built = True

    def assemble(self, batch):
        """x_nbrs, w, eps of one batch from its indices (``dgg_dataset``). The noise is
        the whole batch's, drawn from (seed, epoch, step), and a replica takes its rows
        of it, so that a batch split over replicas has the noise of one device."""
        cfg = self.config
        neighbors = ops.take(self.table, batch["index"], axis=0)
        x_nbrs = ops.take(self.x, neighbors, axis=0)
        sigma_row = None
        if "sigma_index" in batch:
            sigma_row = ops.take(self.x, ops.take(self.table, batch["sigma_index"][0], axis=0),
                                 axis=0)
        w = similarity_weights_ops(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode, sigma_row)
        rows = backend.batch_total(ops.shape(batch["index"])[0])
        eps = batch_noise((rows, neighbors.shape[1], cfg.latent_dim), cfg.seed,
                          batch["epoch"][0], batch["step"][0])
        return x_nbrs, w, ops.take(eps, batch["row"], axis=0)


def dgg_dataset(table, labels, config: DGGConfig, first_epoch=0, last_epoch=None):
    """The index batches of ``fit`` (``train.fit.IndexBatches``): each is a dict of the
    batch's row indices [b], its epoch, step and position in the batch per row (for the
    noise), the labels [b] if known, and for the Q7 sigma quirk the index of batch row
    11 (repeated per row, so that every replica gets it). All NumPy: the step gathers
    the neighbours and draws the noise on the device."""
    labels = None if labels is None else np.asarray(labels, np.int32)
    sigma_row = needs_distances(config.similarity) and config.sigma_mode == "code"

    def make(index, epoch, step):
        b = len(index)
        batch = {"index": index, "epoch": np.full(b, epoch, np.int32),
                 "step": np.full(b, step, np.int32), "row": np.arange(b, dtype=np.int32)}
        if sigma_row:
            batch["sigma_index"] = np.full(b, index[SIGMA_ROW], np.int32)
        if labels is not None:
            batch["labels"] = labels[index]
        return batch
    last = config.epochs if last_epoch is None else last_epoch
    return index_batches(len(table), config.batch_size, config.seed, first_epoch, last,
                         make, stream=2)


class EpochRecorder(keras.callbacks.Callback):
    """Turns each epoch into the run's history record (the original's printout: the
    step means and sums, lr, running and full-pass ACC/NMI), appended to ``history``
    before the callbacks that follow it (files, TensorBoard) run."""

    def __init__(self, x, labels, history, feed):
        super().__init__()
        self.x, self.labels, self.history, self.feed = x, labels, history, feed

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time()
        if self.feed.running is not None:
            self.feed.running.reset_state()

    def on_epoch_end(self, epoch, logs=None):
        cfg = self.model.config
        record = {"epoch": epoch + 1,
                  "lr": step_lr(cfg.learning_rate, cfg.lr_gamma, cfg.lr_step, epoch,
                                cfg.lr_schedule)}
        record.update({m.name: float(m.result()) for m in self.model.step_metrics[:-1]})
        if self.labels is not None:
            running = self.feed.running.scores()
            record.update(running_acc=running["acc"], running_nmi=running["nmi"],
                          **full_pass_scores(self.model, self.x, self.labels))
        record["seconds"] = time.time() - self.t0
        record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.history.append(record)


def _term_metrics(net):
    """The step metrics of the loss terms (objective.TERMS), for the non-finite stop."""
    return [m for m in net.step_metrics if m.name in TERMS]


def _nonfinite_hints(cfg: DGGConfig):
    """What a non-finite term most likely means under ``cfg``."""
    if cfg.prior != "code":
        return {}
    return {"prior": "the code prior takes log(pc) with no epsilon (Q9): a cluster whose "
                     "softmax output is exactly 0 over a whole neighbourhood gives 0 * log 0 "
                     "= NaN, as in the original; prior=paper takes the limit 0 there"}


def train_dgg(net: DGGNetwork, x, table, labels=None, *, history=None, initial_epoch=0,
              epochs=None, callbacks=(), verbose=1):
    """Train a compiled ``net`` (``compile_dgg``) through ``fit`` from ``initial_epoch``
    to ``epochs`` (default ``net.config.epochs``); returns the history (a list of epoch records, extended in
    place when given). The schedule (Q8), the non-finite stop and the record are
    callbacks; ``callbacks`` (yours) run after them, when ``history[-1]`` is the epoch's
    record. Checks its inputs first (an entrance); ``fit_dgg`` trusts them."""
    cfg = net.config
    x = check_data(x, input_dim=cfg.input_dim, likelihood=cfg.likelihood)
    table = check_table(np.asarray(table), "for training", len(x), cfg.num_neighbors)
    labels = check_labels(labels, len(x), "labels")
    check_batches(len(x), cfg, net.steps_per_execution)
    return fit_dgg(net, x, table, labels, history=history, initial_epoch=initial_epoch,
                   epochs=epochs, callbacks=callbacks, verbose=verbose)


def fit_dgg(net: DGGNetwork, x, table, labels=None, *, history=None, initial_epoch=0,
            epochs=None, callbacks=(), verbose=1):
    """``train_dgg`` on inputs already checked (``core.inputs``: float32 x, integer
    table, labels or None): what ``run_dgg`` calls after its own checks."""
    cfg = net.config
    history = [] if history is None else history
    n_classes = None if labels is None else int(labels.max()) + 1
    feed = net.feed = BatchFeed(x, table, cfg, n_classes)
    net.train_function = None      # a traced step holds the previous call's data: retrace
    steps = steps_per_epoch(len(x), cfg.batch_size)
    own = [step_lr_callback(cfg.learning_rate, cfg.lr_gamma, cfg.lr_step, cfg.lr_schedule),
           NonFiniteStop(steps, net.step_metrics[-1], _term_metrics(net), _nonfinite_hints(cfg)),
           StopWhenAsked(), EpochRecorder(x, labels, history, feed)]
    epochs = cfg.epochs if epochs is None else epochs
    backend.plan_steps(net.optimizer, steps * max(cfg.epochs, epochs))
    try:
        if initial_epoch < epochs:
            net.fit(dgg_dataset(table, labels, cfg, initial_epoch, epochs),
                    epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                    callbacks=own + list(callbacks), verbose=verbose, shuffle=False)
    finally:
        del net.feed           # untracked: the feed's arrays are no part of the model
        net.feed = None
        net.train_function = None   # the traced step holds the feed's arrays: free them
    return history


def format_record(r):
    keys = ["epoch", "loss", "running_acc", "running_nmi", "full_acc", "full_nmi", "lr", "seconds"]
    return " ".join(f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}"
                    for k in keys if k in r)
