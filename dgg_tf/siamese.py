"""The Siamese network and the neighbour table (section 2 of the spec).

The original (``Siamesev0.py``) trains the 784-500-500-2000-10 encoder as a
Siamese net on pairs: for every sample its 2 nearest raw-pixel neighbours are
positives, two random permutations of all indices give unchecked negatives, and
the first operand is the data repeated 4 times. The loss per pair is the hinge
``max(0, 3 + y d)`` on the squared embedding distance ``d`` (y = +1 positive,
-1 negative), summed over the batch and divided by the batch size. Its
embeddings then give every sample's 100 nearest neighbours, of which 40 are kept.

Here the pairs are index arrays (rows are gathered per batch, never 4N x 784),
and the table is an (N, 1 + table_columns) int32 array stored as ``.npz``.
"""
from __future__ import annotations

import datetime
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from .config import DGGConfig
from .files import json_default, write_bytes_atomic
from .graph import knn
from .models import Encoder, encode_mean
from .optimizers import TorchAdam, step_lr
from .weights import get_params, set_params

TABLE_FORMAT = "dgg_tf-neighbors-v1"


class TableError(ValueError):
    """A neighbour table file is missing, corrupt, or does not fit the data."""


# ----------------------------------------------------------------------------
# pairs and loss
# ----------------------------------------------------------------------------
def make_pairs(x=None, seed=0, knn_indices=None, n_positives=2, block_size=2048):
    """The original's training pairs, as index arrays ``(first, second, label)``.

    ``first`` is ``arange(N)`` repeated ``2 * n_positives`` times (the data repeated
    4 times); ``second`` is, in this order, the 1st nearest neighbour of every
    sample, the 2nd nearest, ..., then one seeded random permutation of all indices
    per positive column (negatives: not checked, so one can be the same class or the
    sample itself). ``label`` (float32) is 1 for the positives and 0 for the
    negatives. Neighbours are exact squared-Euclidean ones on ``x`` (the row itself
    excluded), computed with ``graph.knn`` unless ``knn_indices`` [N, >= n_positives
    + 1] (column 0 = the row itself) is given. Returns 2 * n_positives * N pairs.
    """
    if knn_indices is None:
        if x is None:
            raise ValueError("make_pairs needs x or knn_indices")
        knn_indices = knn(np.asarray(x), n_positives, block_size=block_size)
    knn_indices = np.asarray(knn_indices)
    if knn_indices.ndim != 2 or knn_indices.shape[1] < n_positives + 1:
        raise ValueError(f"make_pairs: knn_indices must be [N, >= {n_positives + 1}] "
                         f"(column 0 the sample itself), got shape {knn_indices.shape}")
    n = len(knn_indices)
    if x is not None and len(x) != n:
        raise ValueError(f"make_pairs: x has {len(x)} rows but knn_indices {n}")
    if not np.array_equal(knn_indices[:, 0], np.arange(n)):
        raise ValueError("make_pairs: column 0 of knn_indices must be the sample itself")
    rng = np.random.default_rng(seed)
    positives = [knn_indices[:, j] for j in range(1, n_positives + 1)]
    negatives = [rng.permutation(n) for _ in range(n_positives)]
    first = np.tile(np.arange(n, dtype=np.int32), 2 * n_positives)
    second = np.concatenate(positives + negatives).astype(np.int32)
    label = np.concatenate([np.ones(n_positives * n, np.float32),
                            np.zeros(n_positives * n, np.float32)])
    return first, second, label


def hinge_loss(e1, e2, label, margin=3.0):
    """sum over the batch of max(0, margin + y * ||e1 - e2||^2) / batch, y = 2 label - 1."""
    e1 = ops.cast(e1, "float32")
    e2 = ops.cast(e2, "float32")
    y = 2.0 * ops.cast(label, "float32") - 1.0
    d = ops.sum(ops.square(e1 - e2), axis=1)
    return ops.sum(ops.maximum(margin + y * d, 0.0)) / ops.cast(ops.shape(e1)[0], "float32")


# ----------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------
class SiameseNet(keras.Model):
    """The shared encoder 784-500-500-2000 (ReLU) - 10 (linear): encoder1..encoder4,
    the same layers (and names) as the autoencoder's mean path."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = Encoder(config, with_logvar=False, name="encoder")
        self.encoder(ops.zeros((1, config.input_dim)))

    def call(self, x):
        return self.encoder(x)


embed = encode_mean  # embeddings of all rows, in batches (models.encode_mean)


def _optimizer_arrays(optimizer):
    return [np.array(v.numpy()) for v in optimizer.variables]


def train_siamese(x, config: DGGConfig, init_params=None, seed=0, epochs=None, on_epoch=None,
                  state=None, verbose=1, pairs=None):
    """Train the Siamese net on ``x`` [N, input_dim]; returns ``(params, state)``.

    ``init_params``: a weights dict holding encoder1..encoder4 (e.g. the pretrained
    autoencoder), or None for PyTorch-default init (seeded by ``seed``). ``pairs``:
    ``(first, second, label)`` from ``make_pairs``; computed from ``x`` with ``seed``
    when None. Adam (PyTorch semantics, L2 ``siamese_weight_decay`` in the gradient),
    StepLR(``siamese_lr_step``, ``siamese_lr_gamma``) in ``config.lr_schedule`` mode,
    batches of ``siamese_batch_size`` pairs shuffled each epoch (the shuffle of epoch
    e is drawn from ``default_rng([seed, e])``, so a resumed run sees the same
    batches as an uninterrupted one).

    ``on_epoch(state, net)`` is called after every epoch (checkpointing). ``state``
    is a dict: ``params`` (weights), ``optimizer`` (the optimizer's variables: step
    count and Adam moments, so resuming continues the exact optimizer state),
    ``epoch`` (epochs done) and ``history`` (per-epoch mean loss, lr, seconds). Pass
    it back to resume. ``epochs`` defaults to ``config.siamese_epochs`` and is the
    total, not the number still to run.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != config.input_dim:
        raise ValueError(f"train_siamese expects x of shape [N, {config.input_dim}], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("train_siamese: x contains NaN or Inf")
    epochs = config.siamese_epochs if epochs is None else int(epochs)
    keras.utils.set_random_seed(seed)
    net = SiameseNet(config)
    if init_params is not None:
        assigned = set_params(net, init_params, partial=True, source="Siamese initial weights")
        expected = {f"{layer}/{p}" for layer in _encoder_names(config) for p in ("W", "b")}
        if not expected <= set(assigned):
            raise ValueError("Siamese initial weights lack "
                             f"{sorted(expected - set(assigned))}; they must hold the encoder's "
                             f"layers {', '.join(_encoder_names(config))}")
    if pairs is None:
        pairs = make_pairs(x, seed, n_positives=config.siamese_positives)
    first, second, label = (np.asarray(a) for a in pairs)
    if not (len(first) == len(second) == len(label)) or len(first) == 0:
        raise ValueError("train_siamese: pairs must be three arrays of the same, non-zero length")
    if first.min() < 0 or second.min() < 0 or max(first.max(), second.max()) >= len(x):
        raise ValueError(f"train_siamese: pair indices out of range for {len(x)} samples")

    optimizer = TorchAdam(config.siamese_lr, l2=config.siamese_weight_decay)
    optimizer.build(net.trainable_variables)
    state = dict(state or {})
    state.setdefault("epoch", 0)
    state.setdefault("history", [])
    if state.get("params"):
        set_params(net, state["params"], source="Siamese checkpoint")
    if state.get("optimizer") is not None:
        saved = state["optimizer"]
        if len(saved) != len(optimizer.variables):
            raise ValueError(f"Siamese checkpoint: {len(saved)} optimizer arrays, the optimizer "
                             f"has {len(optimizer.variables)}")
        for var, value in zip(optimizer.variables, saved):
            if tuple(np.shape(value)) != tuple(var.shape):
                raise ValueError(f"Siamese checkpoint: optimizer variable {var.path} has shape "
                                 f"{np.shape(value)}, expected {tuple(var.shape)}")
            var.assign(np.asarray(value).astype(var.dtype))

    data = tf.constant(x)
    margin = float(config.siamese_margin)
    variables = net.trainable_variables

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)] * 2
                 + [tf.TensorSpec([None], tf.float32)])
    def step(i1, i2, lab):
        xa = tf.gather(data, i1)
        xb = tf.gather(data, i2)
        with tf.GradientTape() as tape:
            # both operands in one pass (same computation per row, no batch statistics)
            e = net(tf.concat([xa, xb], axis=0))
            e1, e2 = e[:tf.shape(i1)[0]], e[tf.shape(i1)[0]:]
            loss = hinge_loss(e1, e2, lab, margin)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    n_pairs = len(first)
    bs = config.siamese_batch_size
    steps = (n_pairs + bs - 1) // bs
    for epoch in range(state["epoch"], epochs):
        lr = step_lr(config.siamese_lr, config.siamese_lr_gamma, config.siamese_lr_step, epoch,
                     config.lr_schedule)
        optimizer.learning_rate.assign(lr)
        order = np.random.default_rng([seed, epoch]).permutation(n_pairs)
        if verbose:
            print(f"Siamese epoch {epoch + 1}/{epochs} lr={lr:.3g}", flush=True)
        bar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss"])
        total, t0 = 0.0, time.time()
        for s in range(steps):
            idx = order[s * bs:(s + 1) * bs]
            loss = float(step(first[idx].astype(np.int32), second[idx].astype(np.int32),
                              label[idx].astype(np.float32)))
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"Siamese training: loss is {loss} at epoch {epoch + 1}, batch {s + 1}/{steps} "
                    f"(lr {lr:.3g}); the weights diverged or the input holds extreme values")
            total += loss
            bar.update(s + 1, [("loss", total / (s + 1))])
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "loss": total / steps, "lr": lr,
                                 "seconds": round(time.time() - t0, 2)})
        state["params"] = get_params(net)
        state["optimizer"] = _optimizer_arrays(optimizer)
        if on_epoch is not None:
            on_epoch(state, net)
    if not state.get("params"):
        state["params"] = get_params(net)
        state["optimizer"] = _optimizer_arrays(optimizer)
    return get_params(net), state


def _encoder_names(config):
    return [f"encoder{i + 1}" for i in range(len(config.encoder_dims) + 1)]


# ----------------------------------------------------------------------------
# checkpoints (our flat weights format: weights + optimizer arrays + provenance)
# ----------------------------------------------------------------------------
def save_checkpoint(path, state, provenance=None):
    """Write a training state atomically with ``weights.save_weights_h5``: the weights
    under their usual names (so the file also loads as weights), the optimizer's
    variables as ``optimizer/NNN``, epoch and history in the provenance."""
    from .weights import save_weights_h5
    arrays = dict(state["params"])
    for i, value in enumerate(state.get("optimizer") or []):
        arrays[f"optimizer/{i:03d}"] = np.asarray(value, np.float32)
    prov = dict(provenance or {})
    prov.update({"epoch": int(state["epoch"]), "history": state["history"],
                 "n_optimizer_arrays": len(state.get("optimizer") or [])})
    save_weights_h5(path, arrays, prov)


def load_checkpoint(path):
    """Read a checkpoint written by ``save_checkpoint``: ``(state, provenance)``."""
    from .weights import load_weights_h5
    arrays, prov = load_weights_h5(path)
    if "epoch" not in prov or "n_optimizer_arrays" not in prov:
        raise ValueError(f"{path} is a weights file but not a Siamese checkpoint (no epoch)")
    n_opt = int(prov["n_optimizer_arrays"])
    optimizer = []
    for i in range(n_opt):
        name = f"optimizer/{i:03d}"
        if name not in arrays:
            raise ValueError(f"Siamese checkpoint {path} lacks {name}")
        optimizer.append(arrays.pop(name))
    state = {"params": arrays, "optimizer": optimizer or None, "epoch": int(prov["epoch"]),
             "history": list(prov.get("history") or [])}
    return state, prov


# ----------------------------------------------------------------------------
# the neighbour table
# ----------------------------------------------------------------------------
def neighbor_table(embedding, config: DGGConfig, seed=0, knn_indices=None, mode=None):
    """The (N, 1 + table_columns) int32 neighbour table of an embedding.

    The ``table_top`` nearest of every sample (exact, ``graph.knn``; pass
    ``knn_indices`` [N, >= table_top + 1] to reuse them), then by ``mode``
    (default ``config.neighbor_selection``):
    "random_top100" (Q1, the original): column 0 (the sample) plus ``table_columns``
    columns drawn per row without replacement from columns 1..table_top, in the
    drawn order (the original's ``permutation(100)[:40] + 1``; seeded here);
    "nearest": column 0 plus the ``table_columns`` nearest, in order.
    """
    mode = mode or config.neighbor_selection
    if mode not in ("random_top100", "nearest"):
        raise ValueError(f"neighbor_selection must be 'random_top100' or 'nearest', got {mode!r}")
    top, cols = int(config.table_top), int(config.table_columns)
    if knn_indices is None:
        knn_indices = knn(np.asarray(embedding), top)
    knn_indices = np.asarray(knn_indices)
    if knn_indices.ndim != 2 or knn_indices.shape[1] < top + 1:
        raise ValueError(f"neighbor_table: knn_indices must be [N, >= {top + 1}], got "
                         f"{knn_indices.shape}")
    n = len(knn_indices)
    if mode == "nearest":
        table = knn_indices[:, :cols + 1]
    else:
        rng = np.random.default_rng(seed)
        picks = rng.permuted(np.broadcast_to(np.arange(1, top + 1), (n, top)), axis=1)[:, :cols]
        table = np.concatenate([knn_indices[:, :1], np.take_along_axis(knn_indices, picks, axis=1)],
                               axis=1)
    return np.ascontiguousarray(table, np.int32)


def neighbor_purity(table, labels, num_neighbors):
    """Fraction of the neighbours in columns 1..num_neighbors that share the sample's
    label (labels are used for evaluation only)."""
    table = np.asarray(table)
    labels = np.asarray(labels)
    if table.ndim != 2 or num_neighbors < 1 or num_neighbors > table.shape[1] - 1:
        raise ValueError(f"neighbor_purity: num_neighbors={num_neighbors} needs a table with at "
                         f"least {num_neighbors + 1} columns, got shape {table.shape}")
    if len(labels) != len(table):
        raise ValueError(f"neighbor_purity: {len(labels)} labels for {len(table)} rows")
    nbrs = table[:, 1:num_neighbors + 1]
    return float(np.mean(labels[nbrs] == labels[:, None]))


def save_table(path, table, **settings):
    """Write a neighbour table as ``.npz`` (compressed), atomically (temporary file,
    then rename). ``settings`` (selection mode, table_top, seed, provenance,
    purity, ...) must be JSON-serialisable; stored as a JSON string with the format
    tag, the date, N and the number of columns."""
    path = os.fspath(path)
    table = np.asarray(table)
    _check_table(table, path, None)
    meta = {"format": TABLE_FORMAT, "n_samples": int(table.shape[0]),
            "columns": int(table.shape[1]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), **settings}
    try:
        meta_json = json.dumps(meta, sort_keys=True, default=json_default)
    except TypeError as e:
        raise TableError(f"table settings are not JSON-serialisable: {e}") from None
    write_bytes_atomic(path, lambda f: np.savez_compressed(
        f, table=table.astype(np.int32), settings=np.array(meta_json)))


def load_table(path, n_samples=None):
    """Read a table written by ``save_table``: ``(table int32 [N, C], settings dict)``.
    Checks the dtype, shape and index range, that column 0 is the sample itself,
    and (if given) that N equals ``n_samples``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TableError(f"neighbour table: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as d:
            if "table" not in d.files:
                raise TableError(f"neighbour table: {path} holds no 'table' array "
                                 f"(arrays: {', '.join(d.files)})")
            table = d["table"]
            settings = json.loads(str(d["settings"])) if "settings" in d.files else {}
    except TableError:
        raise
    except Exception as e:  # zip/format errors on corrupt files
        raise TableError(f"neighbour table: cannot read {path}: {e}") from None
    _check_table(table, path, n_samples)
    return table.astype(np.int32), settings


def _check_table(table, source, n_samples):
    if not np.issubdtype(table.dtype, np.integer):
        raise TableError(f"neighbour table {source}: dtype {table.dtype}, expected integer "
                         "indices (int32)")
    if table.ndim != 2 or table.shape[1] < 2 or table.shape[0] < 1:
        raise TableError(f"neighbour table {source}: shape {table.shape}, expected [N, 1 + "
                         "neighbours] with at least one neighbour column")
    n = table.shape[0]
    if n_samples is not None and n != int(n_samples):
        raise TableError(f"neighbour table {source} has {n} rows but the data has {n_samples} "
                         "samples; build the table for this data (same order, same subset)")
    if n > np.iinfo(np.int32).max or table.min() < 0 or table.max() >= n:
        raise TableError(f"neighbour table {source}: indices must lie in [0, {n}), found "
                         f"[{table.min()}, {table.max()}]")
    if not np.array_equal(table[:, 0], np.arange(n)):
        bad = int(np.flatnonzero(table[:, 0] != np.arange(n))[0])
        raise TableError(f"neighbour table {source}: column 0 must be the sample itself "
                         f"(row {bad} holds {table[bad, 0]})")
