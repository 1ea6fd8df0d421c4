"""The Keras half of the estimator (``api.estimator.DGG``): what ``fit`` runs on data
the estimator has checked, and the fitted network's inference. The estimator imports
this module on first use, after starting TensorFlow quietly, so that ``dgg_tf.DGG``
itself loads no TensorFlow."""
from __future__ import annotations

import os
import time

import keras
import numpy as np

from dgg_tf.api import observers
from dgg_tf.api.core import (Options, Run, finish_run, record_stages, report_purity, run_in_memory,
                             start_record)
from dgg_tf.api.pipeline import run_checked
from dgg_tf.api.starts import compute_start
from dgg_tf.core.console import say, stage
from dgg_tf.core.inputs import check_weights, run_inputs
from dgg_tf.core.record import run_summary, summary_lines
from dgg_tf.numerics.evaluation import full_pass_scores
from dgg_tf.numerics.knn import tables_of_embedding
from dgg_tf.numerics.models import DGGNetwork, encode_mean
from dgg_tf.numerics.weights import get_params, save_weights_h5, set_params
from dgg_tf.stages.cells import train_cells
from dgg_tf.stages.pretrain import pretrain_checked
from dgg_tf.stages.siamese import SiameseNet, train_siamese_checked
from dgg_tf.stages.watch import CollapseWatch


def autoencoder(x, config, weights, verbose):
    """The autoencoder's params: pretrained here on checked ``x`` when ``weights`` is
    None, else read and checked (a params dict or a weights file)."""
    if weights is None:
        with stage(verbose, f"DGG: autoencoder pretraining ({config.pretrain_schedule})"):
            params, _ = pretrain_checked(x, config, seed=config.seed,
                                         verbose=1 if verbose == 1 else 0)
        return params
    return check_weights(weights, config)[0]


def tables(x, config, neighbors, params, verbose):
    """{selection mode: table} and a note on how it was made: ``neighbors`` is a
    checked table, or "knn" (exact kNN on the inputs) or "siamese" (the Siamese
    network trained on the inputs first, as the original)."""
    if not isinstance(neighbors, str):
        return {config.neighbor_selection: neighbors}, {"source": "arrays"}
    space = x
    if neighbors == "siamese":
        with stage(verbose, f"DGG: Siamese training ({config.siamese_epochs} epochs)"):
            siamese, _ = train_siamese_checked(x, config, init_params=params, seed=config.seed,
                                               verbose=1 if verbose == 1 else 0)
        net = SiameseNet(config)
        set_params(net, siamese, partial=True)
        space = encode_mean(net, x)
    with stage(verbose, "DGG: neighbour tables"):
        found, _, _ = tables_of_embedding(space, config, seed=config.seed)
    note = (f"exact {config.table_top}-NN on the "
            f"{'Siamese embedding' if space is not x else 'inputs'}, "
            f"then neighbor_selection={config.neighbor_selection}")
    return found, {"source": neighbors, "note": note}


def fit(config, x, y, neighbors, weights, workdir=None, verbose=1):
    """Everything ``DGG.fit`` runs after its checks: the autoencoder, the tables, then
    the DGG run, in memory (or with its files in ``workdir``). Returns ``(net, history,
    record, predictions, autoencoder params)``."""
    params = autoencoder(x, config, weights, verbose)
    found, info = tables(x, config, neighbors, params, verbose)
    inputs = run_inputs(config, x, y, found, params,
                        {"source": "arrays passed to run_dgg"}, neighbor_info=info)
    record = start_record(config, inputs, {"source": "dgg_tf.DGG.fit"}, workdir)
    if workdir is not None:
        out = run_checked(config, inputs, workdir, record, audit=False, verbose=verbose)
        return out["network"], out["history"], out["record"], out["predictions"], params
    report_purity(inputs.neighbors.get("purity"), config, verbose)
    watch = observers.console(verbose) + [CollapseWatch(verbose)]
    result = run_in_memory(config, inputs, record, observers=watch,
                           options=Options(verbose=verbose, audit=False))
    record.summary = run_summary(result.history, record)
    say(verbose, f"done: {len(result.history)} epochs")
    for line in summary_lines(record.summary):
        say(verbose, "  " + line)
    return result.net, result.history, record, result.predictions, params


def fit_cells(configs, x, y, neighbors, weights, verbose=1):
    """``fit`` for several seeds (``configs``, differing in seed and K-means' random
    state), their DGG training as cells of one program (``stages.cells``): a list of
    ``fit``'s tuples, or None on TensorFlow or when the seeds' neighbour tables differ
    (then they cannot share a program). Each start is ``api.starts.compute_start``;
    the cells get the first config but their seed (what DGG training reads of the
    rest is the same)."""
    if keras.backend.backend() != "jax":
        return None
    prepared = []
    for config in configs:
        params = autoencoder(x, config, weights, verbose)
        found, info = tables(x, config, neighbors, params, verbose)
        prepared.append((config, params, run_inputs(
            config, x, y, found, params, {"source": "arrays passed to run_dgg"},
            neighbor_info=info, probe_steps=())))
    if any(not np.array_equal(i.table, prepared[0][2].table) for _, _, i in prepared):
        return None
    with stage(verbose, f"DGG: the starts of {len(configs)} seeds"):
        starts = [compute_start(c, i) for c, _, i in prepared]
    t0 = time.time()
    with stage(verbose, f"DGG training: {len(configs)} seeds as cells of one program"):
        trained = train_cells(configs[0], x, prepared[0][2].table, [p for p, _ in starts],
                              [{"seed": c.seed} for c in configs])
    wall = time.time() - t0
    return [_cell_fit(c, i, params, stages, r, wall)
            for (c, params, i), (_, stages), r in zip(prepared, starts, trained)]


def _cell_fit(config, inputs, params, stages, trained, wall):
    """``fit``'s tuple of one trained cell: its network, history (the last epoch with
    its full-pass scores given labels), record and clusters."""
    net = network(config, trained["params"])
    history = [dict(r) for r in trained["history"]]
    if inputs.y is not None and history:
        history[-1].update(full_pass_scores(net, inputs.x, inputs.y))
    record = start_record(config, inputs, {"source": "dgg_tf.DGG.fit (n_init, cells)"})
    record_stages(record, stages)
    pred = finish_run(Run(config, inputs, net, stages, history, record), wall)
    record.summary = run_summary(history, record)
    return net, history, record, pred, params


def network(config, params):
    """A DGGNetwork holding ``params`` (all of its weights)."""
    net = DGGNetwork(config)
    set_params(net, params)
    return net


def encode(net, x):
    return encode_mean(net, x)


def cluster_probabilities(net, z):
    return np.asarray(net.classify(z), np.float32)


def weights_of(net):
    return get_params(net)


def save(directory, params, config):
    save_weights_h5(os.path.join(directory, "model.h5"), params,
                    {"source": "dgg_tf.DGG.save", "config": config.to_dict()})
