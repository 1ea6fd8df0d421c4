"""One start per seed (issue 27, item 3): the weights each DGG cell starts its training
from (the autoencoder, the GMM initialised from K-means, the pretrained classifier) and
its ``Stages`` record, computed once for every group of cells that share them.

What each part depends on, read from the code (``api.core.build_dgg``,
``stages.initialise.init_gmm``/``kmeans_init``, ``pretrain_classifier``), for one data
set and one autoencoder (the caller's ``inputs``):

- K-means (``KMEANS_FIELDS``): the encoder means, so the architecture and precision,
  then ``n_clusters``, ``kmeans_n_init`` and ``kmeans_random_state``. Not the seed:
  K-means has its own ``kmeans_random_state``, so cells of every seed share one K-means
  when they share those fields.
- the start (``START_FIELDS``): K-means' fields, the ``seed`` (``build_dgg`` seeds the
  weights the autoencoder does not set, the classifier's among them, and the
  classifier's batch order), ``likelihood`` (the decoder) and the classifier
  pretraining's fields: ``classifier_pretrain_loss``, ``classifier_epochs``,
  ``classifier_batch_size``, ``classifier_lr``, ``classifier_momentum``,
  ``classifier_weight_decay``, ``classifier_lr_step``, ``classifier_lr_gamma`` and
  ``lr_schedule``.

Everything else (the DGG training's settings: learning rate, prior, similarity, sigma,
neighbours, epochs...) is read only after the start, so cells that differ only there
share it. ``cell_starts`` returns, per config, ``(params, Stages)`` equal to what
``build_dgg`` + ``initial_stages`` give that config alone; with ``store`` (a folder) each
start is also saved there once (``seed-S-KEY.npz``) and read back instead of computed.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from dgg_tf.api.core import Options, Stages, build_dgg, initial_stages
from dgg_tf.core.files import write_bytes_atomic
from dgg_tf.numerics.models import encode_mean
from dgg_tf.numerics.weights import get_params
from dgg_tf.stages.initialise import kmeans_init

KMEANS_FIELDS = ("input_dim", "encoder_dims", "latent_dim", "n_clusters", "precision",
                 "kmeans_n_init", "kmeans_random_state")
START_FIELDS = KMEANS_FIELDS + (
    "seed", "likelihood", "classifier_pretrain_loss", "classifier_epochs",
    "classifier_batch_size", "classifier_lr", "classifier_momentum",
    "classifier_weight_decay", "classifier_lr_step", "classifier_lr_gamma", "lr_schedule")


def key(config, fields):
    """A short stable key of ``config``'s ``fields``."""
    values = {f: getattr(config, f) for f in fields}
    text = json.dumps(values, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def start_file(store, config):
    """Where ``store`` keeps the start of ``config``."""
    return os.path.join(store, f"seed-{config.seed}-{key(config, START_FIELDS)}.npz")


def cell_starts(configs, inputs, store=None):
    """[(params, Stages)] for ``configs`` (one data set and autoencoder: ``inputs``, a
    ``core.inputs.RunInputs``): K-means once per ``KMEANS_FIELDS`` key, the start
    (classifier pretraining) once per ``START_FIELDS`` key; saved to and read from
    ``store`` when given."""
    kmeans, starts, out = {}, {}, []
    for config in configs:
        k = key(config, START_FIELDS)
        if k not in starts:
            starts[k] = _stored_or_computed(config, inputs, kmeans, store)
        out.append(starts[k])
    return out


def _stored_or_computed(config, inputs, kmeans, store):
    path = None if store is None else start_file(store, config)
    if path is not None and os.path.isfile(path):
        return read_start(path)
    start = compute_start(config, inputs, kmeans)
    if path is not None:
        os.makedirs(store, exist_ok=True)
        write_start(path, *start)
    return start


def compute_start(config, inputs, kmeans=None):
    """``(params, Stages)`` of ``config`` alone: ``build_dgg`` then ``initial_stages``
    (no audit), with K-means taken from (or added to) the dict ``kmeans``."""
    kmeans = {} if kmeans is None else kmeans
    net = build_dgg(config, inputs.params, verbose=0)
    k = key(config, KMEANS_FIELDS)
    if k not in kmeans:
        kmeans[k] = kmeans_init(encode_mean(net, inputs.x), config)
    stages = initial_stages(net, inputs, config, Options(verbose=0), kmeans=kmeans[k])
    return get_params(net), stages


def write_start(path, params, stages: Stages):
    """Save a start atomically: the weights, the K-means labels, the stages' record."""
    arrays = {f"params/{n}": np.asarray(a) for n, a in params.items()}
    arrays["kmeans_labels"] = np.asarray(stages.kmeans_labels)
    arrays["stages"] = np.asarray(json.dumps(stages.summary()))
    write_bytes_atomic(path, lambda f: np.savez(f, **arrays))


def read_start(path):
    """``(params, Stages)`` of a start saved by ``write_start``."""
    with np.load(path, allow_pickle=False) as z:
        params = {n[len("params/"):]: z[n] for n in z.files if n.startswith("params/")}
        state = {**json.loads(str(z["stages"])), "arrays": {"kmeans_labels": z["kmeans_labels"]}}
    return params, Stages.from_checkpoint(state)
