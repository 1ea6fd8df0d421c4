"""What stops or hooks into training: ``TrainingError``, the per-epoch hook
(``EpochEnd``: checkpoints, files), the non-finite-loss stop (``NonFiniteStop``) and
the stop a signal asked for (``StopWhenAsked``)."""
from __future__ import annotations

import time

import keras
import numpy as np

from dgg_tf.core import stopping
from dgg_tf.core.errors import TrainingError  # noqa: F401  (raised by the stages)


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
    first non-finite, 0 if none), so it works with several steps per execution, and the
    message names the right batch however late it is read. It is read as a batch
    begins, at most every ``every`` seconds, and at the end of every epoch: reading it
    waits for the step on the device, and a batch-end hook would make Keras turn every
    step's logs into Python numbers (on JAX it turns off the asynchronous batch-end
    callbacks; see ``StopWhenAsked``). A diverged run so stops within about ``every``
    seconds, before its epoch's checkpoint. The message also names which of ``terms``
    (metrics of the epoch's loss terms) are not finite, with ``hints[name]`` after each
    one that has a hint."""

    def __init__(self, steps, metric, terms=(), hints=None, every=1.0):
        super().__init__()
        self.steps, self.metric = steps, metric
        self.terms, self.hints = tuple(terms), dict(hints or {})
        self.epoch, self.every, self.next_check = 0, every, 0.0

    def _culprits(self):
        bad = [m.name for m in self.terms
               if not np.all(np.isfinite(keras.ops.convert_to_numpy(m.result())))]
        if not bad:
            return ""
        return "; not finite: " + ", ".join(
            name + (f" ({self.hints[name]})" if name in self.hints else "") for name in bad)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if batch and time.monotonic() >= self.next_check:
            self._check()
            self.next_check = time.monotonic() + self.every

    def on_epoch_end(self, epoch, logs=None):
        self._check()

    def _check(self):
        _ = self.model   # Keras' Callback.model: on JAX, puts the training state back
        step = int(keras.ops.convert_to_numpy(self.metric.result()))
        if step > 0:
            self.model.stop_training = True
            raise TrainingError(f"loss is not finite at epoch {self.epoch + 1}, batch "
                                f"{step}/{self.steps}{self._culprits()}; training stopped")


class StopWhenAsked(keras.callbacks.Callback):
    """Raises the stop a signal asked for (``stopping.asked``: SIGTERM, Ctrl-C, or a
    sweep's cell whose sweep is gone) before the next batch, abandoning the epoch; the
    last epoch's checkpoint stays. The signal handler raises at once, but Python may
    run it inside a garbage-collector or weakref callback, which only prints the
    exception (JAX runs many): training would go on. Raised here, from a plain frame,
    it is not lost. Checked as each batch begins: a batch-end hook would make Keras
    turn every step's logs into Python numbers before the next step is dispatched (on
    JAX it turns off the asynchronous batch-end callbacks), a wait on the device per
    step; a batch-begin hook gets no logs."""

    def on_train_batch_begin(self, batch, logs=None):
        signum = stopping.asked()
        if signum is not None:
            raise stopping.exception(signum)
