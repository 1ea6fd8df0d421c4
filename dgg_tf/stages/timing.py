"""How long DGG training will take, said before it starts: a short timed warm-up (the
step's forward and backward pass on one real batch, a few times, compiled as the
step is) gives a per-step time and the whole training's estimate. The weights, the
optimizer and every seeded stream are left untouched, so the run is the same run
with or without it. ``pipeline.EarlyEstimate`` refines it from the first real steps,
and the epoch line after epoch 1."""
from __future__ import annotations

import time

import numpy as np
from keras import ops

from dgg_tf import backend
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.tables import columns_needed
from dgg_tf.numerics.graph import similarity_weights
from dgg_tf.numerics.objective import forward_terms
from dgg_tf.numerics.objective_numpy import as_tensors

#: Below this many training steps the first-steps estimate comes soon enough.
WARMUP_MIN_STEPS = 200


def _one_batch(x, table, config: DGGConfig):
    """The first batch's inputs as the step sees them, with fixed noise (NumPy's own
    generator: no seeded stream of the run is drawn from)."""
    rows = table[:config.batch_size, :columns_needed(config.num_neighbors)]
    x_nbrs = np.asarray(x, np.float32)[rows]
    w = similarity_weights(x_nbrs, config.sigma, config.similarity, config.sigma_mode)
    eps = np.random.default_rng(0).standard_normal(
        (*rows.shape, config.latent_dim)).astype(np.float32)
    return as_tensors(x_nbrs, w, eps)


def warmup_seconds(net, x, table, config: DGGConfig, repeats=3):
    """Median seconds of the step's forward and backward pass on one batch (after one
    call that traces it); nothing is applied to the weights."""
    batch = _one_batch(x, table, config)

    pass_ = backend.gradient_function(
        net.trainable_variables,
        lambda x_nbrs, w, eps: (forward_terms(net, x_nbrs, w, eps, config)[1], None))

    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        [ops.convert_to_numpy(g) for g in pass_(*batch)[2] if g is not None]
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def should_warm_up(net, total_steps, verbose):
    """Only where it is printed, worth it, and on one device (a strategy's replicas
    would need the batch split)."""
    return bool(verbose) and total_steps >= WARMUP_MIN_STEPS and \
        backend.replicas(net) == 1
