"""The one gate: everything a run takes, checked once where it enters the library
(``run_dgg``, ``DGG.fit``, the autoencoder pretraining and the Siamese stage), before
any work. It returns what it checked (``RunInputs``, frozen): the code below an
entrance trusts it and checks nothing again. No TensorFlow: a bad input is refused in
a second, before Keras starts.

``CHECKED`` counts the checks of each kind in this process, so that a test can show
that x is checked once per entrance.
"""
from __future__ import annotations

import collections
import dataclasses
import os

import numpy as np

from dgg_tf.core.config import SIGMA_ROW, DGGConfig, q7_failing_last_batch
from dgg_tf.core.files import fingerprint
from dgg_tf.core.tables import as_tables, neighbor_purity
from dgg_tf.core.weight_files import check_params, load_autoencoder

#: {"data": n, "tables": n, "weights": n, "run": n}: checks made in this process.
CHECKED = collections.Counter()


def check_data(x, *, input_dim=None, likelihood=None, name="x"):
    """``x`` as a finite float32 [N, D] array (D equal to ``input_dim`` when given), in
    [0, 1] under ``likelihood="bernoulli"``; else a ValueError saying what is wrong."""
    CHECKED["data"] += 1
    try:
        x = np.asarray(x, np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array: {e}") from None
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N samples, D features], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    if input_dim is not None and x.shape[1] != input_dim:
        raise ValueError(f"{name} must have shape [N, {input_dim}] (the config's input_dim), "
                         f"got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or Inf)")
    if likelihood == "bernoulli":
        lo, hi = float(np.min(x)), float(np.max(x))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} lies in [{lo:.6g}, {hi:.6g}]; likelihood='bernoulli' "
                             "needs values in [0, 1]: scale the data to [0, 1], or use "
                             "likelihood='gaussian' for real-valued features")
    return x


def check_stage_data(x, config: DGGConfig, what, labels=None):
    """The data of a stage (pretraining, the Siamese network) against its config, and
    its labels (evaluation only) if any: ``(x, labels)``; messages name the stage."""
    x = check_data(x, input_dim=config.input_dim, name=f"{what}: x")
    return x, check_labels(labels, len(x), f"{what}: labels")


def check_labels(y, n, name="y"):
    """Labels for ``n`` samples (an int array), None, or a ValueError."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} has {len(y) if y.ndim else 'no'} labels for {n} samples")
    return y


def check_batches(n, config: DGGConfig, steps_per_execution=1):
    """The batches DGG training will make of ``n`` samples: no Q7 last batch (the code's
    IndexError), and ``steps_per_execution`` dividing an epoch's steps (Keras runs that
    many steps per call even across the end of an epoch)."""
    last = q7_failing_last_batch(n, config.batch_size, config.sigma_mode)
    if last:
        raise ValueError(
            f"N={n} leaves a last batch of {last} samples; with sigma_mode='code' the "
            f"original raises IndexError there (Q7: sigma from batch row {SIGMA_ROW}). "
            "Choose N so the last batch is empty or has 12+ samples, or use sigma_mode='honoured'")
    steps = -(-n // config.batch_size)
    if steps_per_execution > 1 and steps % steps_per_execution:
        fits = [d for d in range(steps_per_execution, 0, -1) if steps % d == 0][0]
        raise ValueError(f"steps_per_execution={steps_per_execution} must divide the {steps} "
                         f"steps of an epoch (N={n}, batch {config.batch_size}); use e.g. {fits}")


def check_probe_steps(steps, n, config: DGGConfig):
    """``probe_steps`` as a tuple of step numbers within the first epoch; ValueError
    otherwise."""
    n_steps = -(-n // config.batch_size)
    steps = tuple(steps or ())
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= n_steps
           for s in steps):
        raise ValueError(f"probe_steps must be steps of the first epoch, 1..{n_steps}; "
                         f"got {steps!r}")
    return tuple(int(s) for s in steps)


def check_weights(weights, config: DGGConfig):
    """The autoencoder's params, from a params dict or a weight file (our .h5, VaDE's
    .h5, DGG's .out folder), checked against the config: ``(params, provenance)``."""
    CHECKED["weights"] += 1
    if isinstance(weights, dict):
        return (check_params(dict(weights), config, "weights"),
                {"source": "arrays passed to run_dgg"})
    params, provenance = load_autoencoder(os.fspath(weights), config)
    return params, {"path": os.path.abspath(os.fspath(weights)), **provenance}


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What a DGG run takes, checked: the data, labels, neighbour tables ({selection
    mode: table}; ``table`` is the one training reads), the autoencoder's params and
    where they came from, and the fingerprints a resumed run must match."""
    x: np.ndarray
    y: np.ndarray | None
    tables: dict
    table: np.ndarray
    stored_purity: dict | None
    neighbors: dict
    params: dict
    weights: dict
    probe_steps: tuple
    fingerprints: dict


def check_run_inputs(config: DGGConfig, x, y, neighbors, weights, *, neighbor_info=None,
                     steps_per_execution=1, probe_steps=(1,)) -> RunInputs:
    """Every input of a DGG run against its config, once: data, labels, neighbour
    tables (a file, an (N, 1 + k) array or {selection mode: array}), weights, the
    batches and the probe steps. Returns the frozen ``RunInputs``."""
    CHECKED["run"] += 1
    x = check_data(x, input_dim=config.input_dim, likelihood=config.likelihood)
    y = check_labels(y, len(x), "labels")
    CHECKED["tables"] += 1
    tables, stored_purity, info = as_tables(neighbors, len(x), config)
    check_batches(len(x), config, steps_per_execution)
    params, provenance = check_weights(weights, config)
    return run_inputs(config, x, y, tables, params, provenance, stored_purity,
                      {**info, **(neighbor_info or {})}, probe_steps)


def run_inputs(config: DGGConfig, x, y, tables, params, weights_info, stored_purity=None,
               neighbor_info=None, probe_steps=(1,)) -> RunInputs:
    """``RunInputs`` of parts already checked (what ``check_run_inputs`` checks, or
    what the estimator checked and built itself): adds the probe steps' check, the
    table's purity against the labels and the fingerprints."""
    table = tables[config.neighbor_selection]
    check_batches(len(x), config)
    info = dict(neighbor_info or {})
    if y is not None:
        info["purity"] = neighbor_purity(table, y, config.num_neighbors)
    return RunInputs(x=x, y=y, tables=tables, table=table, stored_purity=stored_purity,
                     neighbors=info, params=params, weights=weights_info,
                     probe_steps=check_probe_steps(probe_steps, len(x), config),
                     fingerprints={"data_fingerprint": fingerprint(x),
                                   "table_fingerprint": fingerprint(table)})
