"""One stage through Keras ``fit``: seeded per-epoch index batches as a
``keras.utils.PyDataset`` (the one input pipeline of both backends), their noise, the
PyTorch StepLR schedule as a callback, and ``LossTrainer`` / ``fit_epochs`` for the
stages whose loss is one scalar of a batch (autoencoder, Siamese); the DGG network has
its own step (``models.DGGNetwork``).

Batches are drawn statelessly: epoch e's order is a fixed function of (seed, e), and
a batch's noise a fixed function of (seed, e, step). A run resumed at an epoch
boundary therefore sees exactly the batches and noise of an uninterrupted run, with
no random-generator state to save, and a batch split over several replicas carries
the same noise as on one device. The order comes from NumPy on the host, so both
backends train on the same batches; the noise is drawn inside the step by the
backend's own stateless generator (``backend.normal``), so its values differ by backend.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dgg_tf import backend
from dgg_tf.core.console import progress_verbose
from dgg_tf.numerics.optimizers import step_lr
from dgg_tf.numerics.step_metrics import FirstNonFinite
from dgg_tf.train.callbacks import NonFiniteStop, StopWhenAsked, TrainingError


def steps_per_epoch(n, batch_size):
    """Batches per epoch, the last one possibly smaller (as PyTorch's DataLoader)."""
    return -(-int(n) // int(batch_size))


def epoch_order(n, seed, epoch):
    """The permutation of range(n) for one epoch: int32 [n], a function of (seed, epoch)
    (NumPy's PCG64 seeded with the pair)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(n)).astype(np.int32)


def noise_key(seed, salt=1):
    """The integer key of a seed's batch noise (``batch_noise``)."""
    return int(seed) * 1_000_003 + salt


def noise_counter(epoch, step):
    """The counter of one batch's noise (``batch_noise``): a scalar of the step."""
    return ops.cast(epoch, "int32") * 1_000_003 + ops.cast(step, "int32")


def batch_noise(shape, seed, epoch, step, salt=1):
    """Standard normal noise of one batch, a function of (seed, epoch, step): drawn in
    the step, by the backend's stateless generator."""
    return backend.normal(shape, noise_key(seed, salt), noise_counter(epoch, step))


class IndexBatches(keras.utils.PyDataset):
    """The batches of epochs first_epoch..last_epoch-1 as one sequence for ``fit``.

    Item i is ``make_batch(index, epoch, step)`` (default: the int32 index vector
    itself) where ``index`` [b] holds the rows of that batch in the epoch's order.
    ``stream`` tells apart the stages that share a seed (classifier pretraining, DGG).
    Train on it with ``fit(..., steps_per_epoch=steps_per_epoch(n, batch_size),
    epochs=last_epoch, initial_epoch=first_epoch)``: Keras then reads it straight
    through, one epoch after another. Only indices (and what ``make_batch`` gathers on
    the host) cross to the device.
    """

    def __init__(self, n, batch_size, seed, first_epoch, last_epoch, make_batch=None,
                 stream=0):
        super().__init__()
        self.n, self.batch_size = int(n), int(batch_size)
        self.steps = steps_per_epoch(self.n, self.batch_size)
        self.first, self.last = int(first_epoch), int(last_epoch)
        self.key = int(seed) * 1000 + int(stream)
        self.make_batch = make_batch or (lambda index, epoch, step: index)
        self._order = (None, None)            # (epoch, its permutation)

    def __len__(self):
        return self.steps * max(0, self.last - self.first)

    def order(self, epoch):
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.n, self.key, epoch))
        return self._order[1]

    def __getitem__(self, i):
        epoch, step = self.first + i // self.steps, i % self.steps
        start = step * self.batch_size
        index = self.order(epoch)[start:min(start + self.batch_size, self.n)]
        return self.make_batch(index, epoch, step)


def index_batches(n, batch_size, seed, first_epoch, last_epoch, make_batch=None, stream=0):
    """``IndexBatches`` of these arguments (the name the stages use)."""
    return IndexBatches(n, batch_size, seed, first_epoch, last_epoch, make_batch, stream)


def step_lr_callback(base, gamma, step, mode="code"):
    """Keras' LearningRateScheduler with the original's StepLR (``step_lr``: in
    "code" mode the schedule is stepped at epoch start, one epoch early: Q8)."""
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, lr=None: step_lr(base, gamma, step, epoch, mode))


class LossTrainer(backend.Trainer, keras.Model):
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

    def train_on(self, batch):
        batch = batch["rows"]         # a dict: Keras passes it through as it is
        loss, _ = self.apply_loss(lambda: (self.batch_loss(self.network, batch), None))
        self.loss_mean.update_state(loss)
        self.nonfinite.update_state(loss)
        return {"loss": self.loss_mean.result()}


def fit_epochs(trainer, optimizer, make_batch, n, batch_size, seed, first_epoch, epochs,
               callbacks=(), verbose=1, label="training"):
    """``trainer.fit`` over epochs first_epoch..epochs-1 of shuffled batches of n rows.

    ``make_batch(index)`` gathers the rows of one batch on the host (NumPy, int32
    indices in the epoch's stateless order from ``index_batches``). ``callbacks`` run
    after the non-finite stop and ``StopWhenAsked``. On TensorFlow the step runs as a
    plain ``tf.function`` (``jit_compile=False``): the optimizers compile their own
    update with XLA, and the loss and gradient stay the same kernels as the
    hand-written step they replace; on JAX the whole step is one jit-compiled program.
    ``shuffle=False``: the batches already come in the epoch's seeded order.
    ``verbose``: ours (``core.console.progress_verbose``): a bar only on a terminal, a
    line per epoch in a file.
    """
    if first_epoch >= epochs:
        return
    steps = steps_per_epoch(n, batch_size)
    data = index_batches(n, batch_size, seed, first_epoch, epochs,
                         lambda index, epoch, step: {"rows": make_batch(index)})
    trainer.compile(optimizer=optimizer, jit_compile=backend.JIT_COMPILE)
    backend.plan_steps(optimizer, steps * epochs)
    try:
        trainer.fit(data, steps_per_epoch=steps, epochs=epochs, initial_epoch=first_epoch,
                    callbacks=[NonFiniteStop(steps, trainer.nonfinite), StopWhenAsked(),
                               *callbacks],
                    verbose=progress_verbose(verbose), shuffle=False)
    except TrainingError as e:
        raise TrainingError(f"{label}: {e}; the weights diverged or the input holds extreme "
                            f"values") from None
