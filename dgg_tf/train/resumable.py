"""One way to make a stage that trains over epochs resumable, for DGG training
(``run_dgg``), the autoencoder pretraining (``pretrain_to_file``) and the Siamese
network (``build_neighbors``): a checkpoint after every epoch (``core.checkpoints``,
one file, written atomically), and on ``--resume`` the stage continues from it exactly,
refusing one made by another run.

``ResumableStage`` owns the checkpoint's path, kind and identity (what a resumed run
must match) and the wall seconds spent across interruptions; ``EpochState`` is the
callback that turns each epoch into the stage's history record and state, then saves.
"""
from __future__ import annotations

import time

import keras

from dgg_tf.core.checkpoints import resume_checkpoint, save_checkpoint
from dgg_tf.numerics.weights import get_params
from dgg_tf.train.checkpoint import optimizer_arrays


class ResumableStage:
    """The checkpoint of one stage: ``path``, ``kind`` ("dgg", "autoencoder",
    "siamese"), ``identity`` (seed, data fingerprint, config...: what a resume must
    match) and ``provenance`` (more to keep beside it). Wall seconds add up across
    resumes."""

    def __init__(self, path, kind, identity, provenance=None):
        self.path, self.kind = path, kind
        self.identity, self.provenance = dict(identity), dict(provenance or {})
        self.wall_before, self.t0 = 0.0, time.time()

    def resume(self, verbose=1):
        """The state to continue from, or None (no checkpoint yet: start afresh)."""
        found = resume_checkpoint(self.path, self.kind, self.identity, verbose)
        if not found:
            return None
        state, provenance = found
        self.wall_before = provenance.get("wall_seconds", 0.0)
        return state

    def start_clock(self):
        """Count wall seconds from now (a stage's own time, without what precedes it)."""
        self.t0 = time.time()

    @property
    def wall_seconds(self):
        return self.wall_before + time.time() - self.t0

    def description(self, **extra):
        """What the checkpoint (or the stage's output file) keeps beside the state."""
        return {**self.provenance, **self.identity, "wall_seconds": round(self.wall_seconds, 1),
                **extra}

    def save(self, state, **extra):
        save_checkpoint(self.path, self.kind, state, self.description(**extra))


class EpochState(keras.callbacks.Callback):
    """After every epoch: the epoch's record (loss, learning rate, seconds) appended to
    ``history``, ``state`` updated (epochs done, the network's weights, the optimizer's
    variables), then ``on_epoch(state)`` (a checkpoint). ``lr(epoch)`` is the learning
    rate of a 0-based epoch; ``before()`` runs first (e.g. copying weights back).
    Without ``on_epoch`` nobody reads the state between epochs (a run in memory), so it
    is updated once, when training ends: copying every weight after every epoch cost
    a tenth of the estimator's pretraining on small data."""

    def __init__(self, state, history, network, optimizer, lr, on_epoch=None, before=None):
        super().__init__()
        self.state, self.history, self.network, self.optimizer = state, history, network, optimizer
        self.lr, self.on_epoch, self.before = lr, on_epoch, before
        self.clock, self.epochs_done = time.time(), 0

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        self.history.append({"epoch": epoch + 1, "loss": float(logs["loss"]),
                             "lr": self.lr(epoch), "seconds": round(now - self.clock, 2)})
        self.clock, self.epochs_done = now, epoch + 1
        if self.on_epoch is not None:
            self._keep()
            self.on_epoch(self.state)

    def on_train_end(self, logs=None):
        if self.on_epoch is None and self.epochs_done:
            self._keep()

    def _keep(self):
        if self.before is not None:
            self.before()
        self.state.update(epoch=self.epochs_done, params=get_params(self.network),
                          optimizer=optimizer_arrays(self.optimizer))
