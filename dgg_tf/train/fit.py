"""One stage through Keras ``fit``: seeded per-epoch batches as a ``tf.data`` pipeline,
their noise, the PyTorch StepLR schedule as a callback, and ``LossTrainer`` /
``fit_epochs`` for the stages whose loss is one scalar of a batch (autoencoder,
Siamese); the DGG network has its own ``train_step`` (``models.DGGNetwork``).

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

from ..optimizers import step_lr
from .callbacks import NonFiniteStop, TrainingError
from ..step_metrics import FirstNonFinite


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


class LossTrainer(keras.Model):
    """Trains ``network`` through ``fit`` on ``batch_loss(network, batch)``.

    Why a ``train_step`` and not ``compile(loss=...)``: Keras' compiled loss is
    ``loss(y, y_pred)`` reduced by a sample-weighted mean; the original's losses are
    scalars of a whole batch (summed, or summed over pairs), so the step computes them
    directly, then one gradient and one optimizer update: the same computation as the
    original's ``loss.backward(); optimizer.step()``.

    Logs the running mean ``loss`` of the epoch; ``nonfinite`` (a
    ``metrics.FirstNonFinite``) holds the first step whose loss was not finite, for
    ``callbacks.NonFiniteStop``.
    """

    def __init__(self, network, batch_loss):
        super().__init__(name="loss_trainer")
        self.network = network
        self.batch_loss = batch_loss
        self.loss_mean = keras.metrics.Mean(name="loss")
        self.nonfinite = FirstNonFinite()
        self.built = True        # the network is built; nothing to infer from data

    @property
    def metrics(self):
        return [self.loss_mean, self.nonfinite]

    def train_step(self, batch):
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.batch_loss(self.network, batch)
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.loss_mean.update_state(loss)
        self.nonfinite.update_state(loss)
        return {"loss": self.loss_mean.result()}


def fit_epochs(trainer, optimizer, make_batch, n, batch_size, seed, first_epoch, epochs,
               callbacks=(), verbose=1, label="training"):
    """``trainer.fit`` over epochs first_epoch..epochs-1 of shuffled batches of n rows.

    ``make_batch(index)`` gathers the rows of one batch (int64 indices, the epoch's
    stateless order from ``index_batches``). ``callbacks`` run after the
    non-finite stop. The step runs as a plain ``tf.function`` (``jit_compile=False``):
    the optimizers compile their own update with XLA, and the loss and gradient stay
    the same kernels as the hand-written step they replace (checked bit for bit).
    ``shuffle=False``: the batches already come in the epoch's seeded order.
    """
    if first_epoch >= epochs:
        return
    steps = steps_per_epoch(n, batch_size)
    data = index_batches(n, batch_size, seed, first_epoch, epochs,
                         lambda index, epoch, step: make_batch(index))
    trainer.compile(optimizer=optimizer, jit_compile=False)
    try:
        trainer.fit(data, steps_per_epoch=steps, epochs=epochs, initial_epoch=first_epoch,
                    callbacks=[NonFiniteStop(steps, trainer.nonfinite), *callbacks],
                    verbose=verbose, shuffle=False)
    except TrainingError as e:
        raise TrainingError(f"{label}: {e}; the weights diverged or the input holds extreme "
                            f"values") from None


def check_samples(x, config, what):
    """``x`` as float32 [N, input_dim], finite, or a ValueError naming ``what``."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != config.input_dim or len(x) == 0:
        raise ValueError(f"{what} expects x of shape [N, {config.input_dim}], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: x contains NaN or Inf")
    return x
