"""What every stage needs to train the Keras way (``fit`` + callbacks): seeded
per-epoch batches as a ``tf.data`` pipeline, the PyTorch StepLR schedule as a
callback, a per-epoch checkpoint hook and a non-finite-loss stop.

Batches are drawn statelessly: epoch e's order is a fixed function of (seed, e), and
a batch's noise a fixed function of (seed, e, step). A run resumed at an epoch
boundary therefore sees exactly the batches and noise of an uninterrupted run, with
no random-generator state to save, and a batch split over several replicas
(``tf.distribute``) carries the same noise as on one device.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .metrics import scores_from_contingency
from .optimizers import step_lr


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad inputs)."""


def steps_per_epoch(n, batch_size):
    """Batches per epoch, the last one possibly smaller (as PyTorch's DataLoader)."""
    return -(-int(n) // int(batch_size))


def epoch_order(n, seed, epoch):
    """The permutation of range(n) for one epoch: int32 [n], a function of (seed, epoch)."""
    return tf.random.experimental.index_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64),
                                                    tf.cast(epoch, tf.int64)]),
        max_index=n - 1)


def batch_noise(shape, seed, epoch, step, salt=1):
    """Standard normal noise of one batch, a function of (seed, epoch, step)."""
    key = tf.cast(seed, tf.int64) * 1_000_003 + salt
    return tf.random.stateless_normal(
        shape, seed=tf.stack([key, tf.cast(epoch, tf.int64) * 1_000_003
                              + tf.cast(step, tf.int64)]), alg="philox")


def index_batches(n, batch_size, seed, first_epoch, last_epoch, make_batch=None, stream=0):
    """A ``tf.data.Dataset`` of the batches of epochs first_epoch..last_epoch-1.

    Each element is ``make_batch(index, epoch, step)`` (default: the int64 index vector
    itself) where ``index`` [b] holds the rows of that batch in the epoch's order.
    ``stream`` tells apart the stages that share a seed (classifier pretraining, DGG).
    Train on it with ``fit(..., steps_per_epoch=steps_per_epoch(n, batch_size),
    epochs=last_epoch, initial_epoch=first_epoch)``: Keras then keeps one iterator
    across epochs.
    """
    n, batch_size = int(n), int(batch_size)
    steps = steps_per_epoch(n, batch_size)
    make_batch = make_batch or (lambda index, epoch, step: index)

    def epoch_batches(epoch):
        order = epoch_order(n, seed * 1000 + stream, epoch)

        def one(step):
            start = step * batch_size
            index = order[start:tf.minimum(start + batch_size, n)]
            return make_batch(index, epoch, step)
        return tf.data.Dataset.range(steps).map(one)

    ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(epoch_batches)
    return ds.prefetch(tf.data.AUTOTUNE)


def step_lr_callback(base, gamma, step, mode="code"):
    """Keras' LearningRateScheduler with the original's StepLR (``step_lr``: in
    "code" mode the schedule is stepped at epoch start, one epoch early: Q8)."""
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, lr=None: step_lr(base, gamma, step, epoch, mode))


class EpochEnd(keras.callbacks.Callback):
    """Calls ``fn(epoch, logs)`` after every epoch (checkpoints, files, hooks).

    Keras' ModelCheckpoint writes weights or a .keras file in place; our checkpoints
    also hold the run's history and metadata and are written to a temporary name and
    renamed, so a kill at any moment leaves the previous checkpoint intact."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def on_epoch_end(self, epoch, logs=None):
        self.fn(epoch, logs if logs is not None else {})


class NonFiniteStop(keras.callbacks.Callback):
    """Stops training with a ``TrainingError`` naming the epoch and batch of the first
    non-finite loss. Keras' TerminateOnNaN stops silently and names neither.

    Reads ``metric`` (a ``FirstNonFinite``: the 1-based step of the epoch whose loss was
    first non-finite, 0 if none), so it works with several steps per execution. The
    message also names which of ``terms`` (metrics of the epoch's loss terms) are not
    finite, with ``hints[name]`` after each one that has a hint."""

    def __init__(self, steps, metric, terms=(), hints=None):
        super().__init__()
        self.steps, self.metric = steps, metric
        self.terms, self.hints = tuple(terms), dict(hints or {})
        self.epoch = 0

    def _culprits(self):
        bad = [m.name for m in self.terms
               if not np.all(np.isfinite(keras.ops.convert_to_numpy(m.result())))]
        if not bad:
            return ""
        return "; not finite: " + ", ".join(
            name + (f" ({self.hints[name]})" if name in self.hints else "") for name in bad)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.metric.result()))
        if step > 0:
            self.model.stop_training = True
            raise TrainingError(f"loss is not finite at epoch {self.epoch + 1}, batch "
                                f"{step}/{self.steps}{self._culprits()}; training stopped")


# ---------------------------------------------------------------- Keras metrics of fit
# Keras' own Mean accumulates in float32 and weights by batch; these accumulate in float64,
# one unit per step, so an epoch's figure is the original's (1/steps) sum_s value_s. The
# values they receive are already summed over replicas (``training`` all-reduces them),
# so every replica holds the same state and the read is their mean.


class StepMean(keras.metrics.Metric):
    """Mean over the steps of an epoch of one per-step value (float64)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.total = self.add_variable((), "zeros", "float64", "mean", "total")
        self.steps = self.add_variable((), "zeros", "float64", "mean", "steps")

    def update_state(self, value):
        self.total.assign_add(keras.ops.cast(value, "float64"))
        self.steps.assign_add(keras.ops.cast(1.0, "float64"))

    def result(self):
        return keras.ops.divide_no_nan(self.total, self.steps)


class StepSum(keras.metrics.Metric):
    """Sum over the steps of an epoch of one per-step value (float64)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.total = self.add_variable((), "zeros", "float64", "mean", "total")

    def update_state(self, value):
        self.total.assign_add(keras.ops.cast(value, "float64"))

    def result(self):
        return keras.ops.add(self.total, 0.0)   # a tensor, also of an on-read variable


class FirstNonFinite(keras.metrics.Metric):
    """The 1-based step of the epoch whose value was first non-finite (0: none yet)."""

    def __init__(self, name="nonfinite_step", **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.steps = self.add_variable((), "zeros", "float64", "mean", "steps")
        self.first = self.add_variable((), "zeros", "float64", "mean", "first")

    def update_state(self, value):
        self.steps.assign_add(keras.ops.cast(1.0, "float64"))
        bad = keras.ops.logical_not(keras.ops.isfinite(value))
        new = keras.ops.logical_and(bad, keras.ops.equal(self.first, 0.0))
        self.first.assign(keras.ops.where(new, self.steps, self.first))

    def result(self):
        return keras.ops.add(self.first, 0.0)


class Contingency(keras.metrics.Metric):
    """Counts of (cluster, class) pairs over an epoch; ``scores_from_contingency`` turns
    them into ACC/NMI. Each replica counts its own rows; the read sums them."""

    def __init__(self, n_clusters, n_classes, name="contingency", **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        self.n_clusters, self.n_classes = int(n_clusters), int(n_classes)
        self.counts = self.add_variable((self.n_clusters, self.n_classes), "zeros", "float64",
                                        "sum", "counts")

    def update_state(self, pred, labels):
        a = keras.ops.one_hot(pred, self.n_clusters, dtype="float64")
        b = keras.ops.one_hot(labels, self.n_classes, dtype="float64")
        self.counts.assign_add(keras.ops.matmul(keras.ops.transpose(a), b))

    def result(self):
        return keras.ops.sum(self.counts)

    def scores(self):
        return scores_from_contingency(keras.ops.convert_to_numpy(self.counts))
