"""Putting a checkpoint (``core.checkpoints``, the one format) back into a network and
its optimizer, so that a resumed stage continues with its exact state."""
from __future__ import annotations

import numpy as np

from dgg_tf.core.checkpoints import KINDS  # noqa: F401  (one import for the stages)
from dgg_tf.core.checkpoints import (CheckpointFormatError, checkpoint_path, load_checkpoint,
                                     read_record, resume_checkpoint, save_checkpoint)
from dgg_tf.core.rundir import CHECKPOINT as RUN_CHECKPOINT  # noqa: F401  (a run's, by name)
from dgg_tf.numerics.weights import set_params


# ---------------------------------------------------------------- optimizer state
def optimizer_arrays(optimizer):
    """Copies of every optimizer variable (step count, learning rate, moments)."""
    return [np.array(v.numpy()) for v in optimizer.variables]


def restore_optimizer(optimizer, variables, arrays, source="checkpoint"):
    """Load ``arrays`` (``optimizer_arrays``) into ``optimizer``, built for ``variables``
    first if it is not yet, so that a resumed run continues with its exact state."""
    if not optimizer.built:
        optimizer.build(variables)
    if len(arrays) != len(optimizer.variables):
        raise ValueError(f"{source}: {len(arrays)} optimizer arrays, the optimizer has "
                         f"{len(optimizer.variables)}")
    for var, value in zip(optimizer.variables, arrays):
        if tuple(np.shape(value)) != tuple(var.shape):
            raise ValueError(f"{source}: optimizer variable {var.path} has shape "
                             f"{np.shape(value)}, expected {tuple(var.shape)}")
        var.assign(np.asarray(value).astype(var.dtype))


def restore_network(net, params, arrays, source="checkpoint"):
    """Put a checkpoint's weights (all of them) and optimizer state into a compiled
    ``net``."""
    set_params(net, params, source=source)
    restore_optimizer(net.optimizer, net.trainable_variables, arrays, source)
