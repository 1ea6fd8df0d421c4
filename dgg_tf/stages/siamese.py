"""The Siamese network and the neighbour tables of its embedding (section 2 of
docs/quirks.md).

The original (``Siamesev0.py``) trains the 784-500-500-2000-10 encoder as a
Siamese net on pairs: for every sample its 2 nearest raw-pixel neighbours are
positives, two random permutations of all indices give unchecked negatives, and
the first operand is the data repeated 4 times. The loss per pair is the hinge
``max(0, 3 + y d)`` on the squared embedding distance ``d`` (y = +1 positive,
-1 negative), summed over the batch and divided by the batch size. Its
embeddings then give every sample's 100 nearest neighbours, of which 40 are kept.

Here the pairs are index arrays (rows are gathered per batch, never 4N x 784),
the network trains through Keras ``fit`` (``train.fit.LossTrainer``) with StepLR,
per-epoch checkpoint (a "siamese" one, ``train.checkpoint``) and non-finite stop as
callbacks, and the table (its format, files, checks and building: ``dgg_tf.tables``)
is an (N, 1 + table_columns) int32 array stored as ``.npz``. ``build_neighbors`` is the
whole job of ``reproduce/siamese_mnist.py``; ``subset_neighbors`` builds the table
inside a subset from an already trained network.
"""
from __future__ import annotations

import os
import time

import keras
import numpy as np
from keras import ops

from dgg_tf import backend
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.files import check_output_path, fingerprint, write_bytes_atomic
from dgg_tf.core.inputs import check_stage_data
from dgg_tf.core.metrics import kmeans_scores
from dgg_tf.core.tables import check_table_size, save_table, table_paths
from dgg_tf.core.weight_files import check_params, load_any
from dgg_tf.numerics.knn import knn, tables_of_embedding
from dgg_tf.numerics.models import Encoder, encode_mean
from dgg_tf.numerics.optimizers import TorchAdam, step_lr
from dgg_tf.numerics.weights import get_params, save_weights_h5, set_params
from dgg_tf.train.checkpoint import checkpoint_path, optimizer_arrays, restore_optimizer
from dgg_tf.train.fit import LossTrainer, fit_epochs, step_lr_callback
from dgg_tf.train.resumable import EpochState, ResumableStage


# ----------------------------------------------------------------------------
# pairs and loss
# ----------------------------------------------------------------------------
def make_pairs(x=None, seed=0, knn_indices=None, n_positives=2, block_size=2048):
    """The original's training pairs, as index arrays ``(first, second, label)``.

    ``first`` is ``arange(N)`` repeated ``2 * n_positives`` times (the data repeated
    4 times); ``second`` is, in this order, the 1st nearest neighbour of every
    sample, the 2nd nearest, ..., then one seeded random permutation of all indices
    per positive column (negatives: not checked, so one can be the same class or the
    sample itself). ``label`` (float32) is 1 for the positives and 0 for the
    negatives. Neighbours are exact squared-Euclidean ones on ``x`` (the row itself
    excluded), computed with ``knn.knn`` unless ``knn_indices`` [N, >= n_positives
    + 1] (column 0 = the row itself) is given. Returns 2 * n_positives * N pairs.
    """
    if knn_indices is None:
        if x is None:
            raise ValueError("make_pairs needs x or knn_indices")
        knn_indices = knn(np.asarray(x), n_positives, block_size=block_size)
    knn_indices = np.asarray(knn_indices)
    if knn_indices.ndim != 2 or knn_indices.shape[1] < n_positives + 1:
        raise ValueError(f"make_pairs: knn_indices must be [N, >= {n_positives + 1}] "
                         f"(column 0 the sample itself), got shape {knn_indices.shape}")
    n = len(knn_indices)
    if x is not None and len(x) != n:
        raise ValueError(f"make_pairs: x has {len(x)} rows but knn_indices {n}")
    if not np.array_equal(knn_indices[:, 0], np.arange(n)):
        raise ValueError("make_pairs: column 0 of knn_indices must be the sample itself")
    rng = np.random.default_rng(seed)
    positives = [knn_indices[:, j] for j in range(1, n_positives + 1)]
    negatives = [rng.permutation(n) for _ in range(n_positives)]
    first = np.tile(np.arange(n, dtype=np.int32), 2 * n_positives)
    second = np.concatenate(positives + negatives).astype(np.int32)
    label = np.concatenate([np.ones(n_positives * n, np.float32),
                            np.zeros(n_positives * n, np.float32)])
    return first, second, label


def hinge_loss(e1, e2, label, margin=3.0):
    """sum over the batch of max(0, margin + y * ||e1 - e2||^2) / batch, y = 2 label - 1."""
    e1 = ops.cast(e1, "float32")
    e2 = ops.cast(e2, "float32")
    y = 2.0 * ops.cast(label, "float32") - 1.0
    d = ops.sum(ops.square(e1 - e2), axis=1)
    return ops.sum(ops.maximum(margin + y * d, 0.0)) / ops.cast(ops.shape(e1)[0], "float32")


# ----------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------
class SiameseNet(keras.Model):
    """The shared encoder 784-500-500-2000 (ReLU) - 10 (linear): encoder1..encoder4,
    the same layers (and names) as the autoencoder's mean path."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = Encoder(config, with_logvar=False, name="encoder")
        self.encoder(ops.zeros((1, config.input_dim)))
        self.built = True          # built above; Keras on JAX would otherwise trace it in fit

    def call(self, x):
        return self.encoder(x)


embed = encode_mean  # embeddings of all rows, in batches (models.encode_mean)


def _encoder_names(config):
    return [f"encoder{i + 1}" for i in range(len(config.encoder_dims) + 1)]


def load_encoder_params(net, params, source):
    """Assign encoder1..encoder4 of ``params`` to a ``SiameseNet``; a ValueError names
    what is missing or does not fit (shapes are checked by ``set_params``)."""
    assigned = set_params(net, params, partial=True, source=source)
    expected = {f"{layer}/{p}" for layer in _encoder_names(net.config) for p in ("W", "b")}
    if not expected <= set(assigned):
        raise ValueError(f"{source} lack {sorted(expected - set(assigned))}; they must hold "
                         f"the encoder's layers {', '.join(_encoder_names(net.config))}")


def _checked_pairs(pairs, n):
    first, second, label = (np.asarray(a) for a in pairs)
    if not (len(first) == len(second) == len(label)) or len(first) == 0:
        raise ValueError("train_siamese: pairs must be three arrays of the same, non-zero length")
    if first.min() < 0 or second.min() < 0 or max(first.max(), second.max()) >= n:
        raise ValueError(f"train_siamese: pair indices out of range for {n} samples")
    return first.astype(np.int32), second.astype(np.int32), label.astype(np.float32)


def _pair_batches(x, pairs):
    """``make_batch`` for ``train.fit.fit_epochs``: the rows of both operands and the
    labels of a batch of pair indices (rows gathered per batch on the host, never
    4N x 784)."""
    first, second, label = pairs

    def make_batch(index):
        return x[first[index]], x[second[index]], label[index]
    return make_batch


def _pair_loss(margin):
    def loss(net, batch):
        xa, xb, lab = batch
        # both operands in one pass (same computation per row, no batch statistics)
        e = net(ops.concatenate([xa, xb], axis=0))
        n = ops.shape(xa)[0]
        return hinge_loss(e[:n], e[n:], lab, margin)
    return loss


def train_siamese(x, config: DGGConfig, init_params=None, seed=0, epochs=None, on_epoch=None,
                  state=None, verbose=1, pairs=None, callbacks=()):
    """Train the Siamese net on ``x`` [N, input_dim] through Keras ``fit``; returns
    ``(params, state)``.

    ``init_params``: a weights dict holding encoder1..encoder4 (e.g. the pretrained
    autoencoder), or None for PyTorch-default init (seeded by ``seed``). ``pairs``:
    ``(first, second, label)`` from ``make_pairs``; computed from ``x`` with ``seed``
    when None. Adam (PyTorch semantics, L2 ``siamese_weight_decay`` in the gradient),
    StepLR(``siamese_lr_step``, ``siamese_lr_gamma``) in ``config.lr_schedule`` mode,
    batches of ``siamese_batch_size`` pairs in the stateless order of
    ``train.fit.index_batches`` (a function of seed and epoch).

    ``on_epoch(state, net)`` is called after every epoch (checkpointing); ``callbacks``
    (Keras callbacks) are added to the ``fit``. ``state``: ``params``, ``optimizer``
    (the optimizer's variables: step count and Adam moments), ``epoch`` (epochs done)
    and ``history`` (per-epoch mean loss, lr, seconds). Passing it back resumes with
    the same result as an uninterrupted run. ``epochs`` (default
    ``config.siamese_epochs``) is the total, not the number still to run.
    """
    x, _ = check_stage_data(x, config, "train_siamese")
    return train_siamese_checked(x, config, init_params, seed, epochs, on_epoch, state,
                                 verbose, pairs, callbacks)


def train_siamese_checked(x, config, init_params=None, seed=0, epochs=None, on_epoch=None,
                          state=None, verbose=1, pairs=None, callbacks=()):
    """``train_siamese`` on data already checked (``core.inputs``)."""
    epochs = config.siamese_epochs if epochs is None else int(epochs)
    backend.set_seed(seed)
    backend.set_precision(config.precision)
    net = SiameseNet(config)
    if init_params is not None:
        load_encoder_params(net, init_params, "Siamese initial weights")
    if pairs is None:
        pairs = make_pairs(x, seed, n_positives=config.siamese_positives)
    pairs = _checked_pairs(pairs, len(x))
    optimizer = TorchAdam(config.siamese_lr, l2=config.siamese_weight_decay)
    state = dict(state or {})
    state.setdefault("epoch", 0)
    state["history"] = list(state.get("history") or [])[:state["epoch"]]
    if state.get("params"):
        set_params(net, state["params"], source="Siamese checkpoint")
    if state.get("optimizer") is not None:
        restore_optimizer(optimizer, net.trainable_variables, state["optimizer"],
                          "Siamese checkpoint")
    lr_args = (config.siamese_lr, config.siamese_lr_gamma, config.siamese_lr_step)
    keep = EpochState(state, state["history"], net, optimizer,
                      lambda epoch: step_lr(*lr_args, epoch, config.lr_schedule),
                      None if on_epoch is None else (lambda st: on_epoch(st, net)))
    fit_epochs(LossTrainer(net, _pair_loss(float(config.siamese_margin))), optimizer,
               _pair_batches(x, pairs), len(pairs[0]), config.siamese_batch_size, seed,
               state["epoch"], epochs, [step_lr_callback(*lr_args, config.lr_schedule), keep,
                                        *callbacks],
               verbose, "Siamese training")
    if not state.get("params"):
        optimizer.build(net.trainable_variables)
        state.update(params=get_params(net), optimizer=optimizer_arrays(optimizer))
    return get_params(net), state


# ----------------------------------------------------------------------------
# the whole job: Siamese training, tables and their files
# ----------------------------------------------------------------------------
def _initial_encoder(weights, config):
    """encoder1..encoder4 of a weights file (any format ``weights.load_any`` reads), or
    None for ``weights`` None / "none" (PyTorch-default init)."""
    if weights is None or os.fspath(weights).lower() == "none":
        return None
    if not os.path.exists(weights):
        raise ValueError(f"initial weights {weights} do not exist; pretrain them with "
                         "reproduce/pretrain_mnist.py or pass --weights none")
    params, _ = load_any(weights, config)
    needed = [f"{layer}/{w}" for layer in _encoder_names(config) for w in ("W", "b")]
    check_params(params, config, f"initial weights {weights} (the Siamese net starts from the "
                 "autoencoder's encoder1..encoder4)", required=needed)
    return {name: params[name] for name in needed}


def check_neighbor_files(config, *, weights, out_weights, out_table, resume=False, epochs=None,
                         n_samples=None):
    """The checks ``build_neighbors`` makes before any work, for callers to run before
    loading data: epochs, the number of samples (if known), the outputs (new unless
    ``resume``, writable) and the initial weights. Raises ValueError; returns the
    initial encoder params (None for default init)."""
    epochs = config.siamese_epochs if epochs is None else epochs
    if epochs < 0:
        raise ValueError(f"--epochs must be non-negative, got {epochs}")
    if n_samples is not None:
        check_table_size(n_samples, config, "build_neighbors")
    if os.path.exists(out_weights) and not resume:
        raise ValueError(f"{out_weights} exists; remove it or pass --resume")
    for path in (out_weights, *table_paths(out_table).values()):
        check_output_path(path, "output")
    return _initial_encoder(weights, config)


def raw_pixel_pairs(x, config, seed, cache_path=None, verbose=1):
    """``make_pairs`` on the exact raw-pixel nearest neighbours, which are cached in
    ``cache_path`` (keyed by the data's fingerprint); returns ``(pairs, knn_seconds)``
    (seconds None when the cache was used)."""
    data, positives = fingerprint(x), config.siamese_positives
    nearest, seconds = None, None
    if cache_path is not None and os.path.exists(cache_path):
        with np.load(cache_path, allow_pickle=False) as d:
            if str(d["fingerprint"]) == data and d["knn"].shape == (len(x), positives + 1):
                nearest = d["knn"]
                if verbose:
                    print(f"raw-pixel {positives}-NN from cache {cache_path}", flush=True)
    if nearest is None:
        t = time.time()
        nearest = knn(x, positives)
        seconds = round(time.time() - t, 1)
        if verbose:
            print(f"raw-pixel {positives}-NN of {len(x)} samples: {seconds} s", flush=True)
        if cache_path is not None:
            write_bytes_atomic(cache_path, lambda f: np.savez(
                f, knn=nearest.astype(np.int32), fingerprint=np.array(data)))
    pairs = make_pairs(x, seed, knn_indices=nearest, n_positives=positives)
    if verbose:
        print(f"pairs: {len(pairs[0])} ({int(pairs[2].sum())} positive)", flush=True)
    return pairs, seconds


def _embedding_metrics(net, x, labels, config, seed, verbose):
    """Embeddings, K-means ACC/NMI (with labels) and the tables of every mode."""
    z = embed(net, x)
    metrics = {}
    if labels is not None:
        _, metrics = kmeans_scores(z, labels, config.n_clusters, config.kmeans_n_init,
                                   config.kmeans_random_state)
    tables, purity, seconds = tables_of_embedding(z, config, seed, labels)
    metrics.update({f"purity_{mode}": value for mode, value in purity.items()})
    if purity:
        metrics["purity_num_neighbors"] = config.num_neighbors
    if verbose:
        if labels is not None:
            print(f"K-means(n_init={config.kmeans_n_init}) on the Siamese embedding: "
                  f"ACC={metrics['kmeans_acc']:.4f} NMI={metrics['kmeans_nmi']:.4f}", flush=True)
        print(f"{config.table_top}-NN in the embedding: {seconds} s", flush=True)
        for mode, value in purity.items():
            print(f"neighbour purity ({mode}, {config.num_neighbors} training neighbours): "
                  f"{value:.4f}", flush=True)
    return tables, purity, metrics


def build_neighbors(config, x, *, weights, out_weights, out_table, labels=None, seed=0,
                    epochs=None, resume=False, verbose=1, provenance=None, callbacks=()):
    """Train the Siamese net on ``x`` and write it and the neighbour tables (section 2);
    returns ``(params, metrics)``.

    ``weights``: initial encoder weights (a file any ``weights.load_any`` format, or
    "none"/None for PyTorch-default init). Writes ``out_weights`` (our weights format),
    ``out_table`` (the original's random_top100 table, Q1) and the other modes'
    tables next to it (``table_paths``), all atomically, with the purity of every
    mode (when ``labels`` are given; labels are for evaluation only). After every
    epoch the training state goes to ``OUT_WEIGHTS.ckpt.npz``; ``resume=True``
    continues from it exactly (refusing one made with another seed, precision or
    data). The raw-pixel neighbours are cached in ``OUT_WEIGHTS.pairs.npz``.
    ``epochs`` (default ``config.siamese_epochs``) is the total.
    """
    epochs = config.siamese_epochs if epochs is None else int(epochs)
    out_weights, out_table = os.fspath(out_weights), os.fspath(out_table)
    init_params = check_neighbor_files(config, weights=weights, out_weights=out_weights,
                                       out_table=out_table, resume=resume, epochs=epochs)
    x, labels = check_stage_data(x, config, "build_neighbors", labels)
    check_table_size(len(x), config, "build_neighbors")
    t0 = time.time()
    job = ResumableStage(checkpoint_path(out_weights), "siamese",
                         {"seed": seed, "precision": config.precision,
                          "data_fingerprint": fingerprint(x)},
                         {**(provenance or {}), "init_weights": os.fspath(weights or "none"),
                          "epochs_requested": epochs, "config": config.to_dict()})
    state = job.resume(verbose) if resume else None
    pairs, raw_seconds = raw_pixel_pairs(x, config, seed, out_weights + ".pairs.npz", verbose)
    params, state = train_siamese_checked(
        x, config, init_params, seed, epochs,
        lambda st, net: job.save(st, epochs_run=int(st["epoch"])), state, verbose, pairs,
        callbacks)
    net = SiameseNet(config)
    set_params(net, params)
    tables, purity, metrics = _embedding_metrics(net, x, labels, config, seed, verbose)
    if raw_seconds is not None:
        metrics["raw_knn_seconds"] = raw_seconds
    final = job.description(epochs_run=int(state["epoch"]), metrics=metrics,
                            history=state["history"])
    for mode, path in table_paths(out_table).items():
        save_table(path, tables[mode], neighbor_selection=mode, table_top=config.table_top,
                   table_columns=config.table_columns, num_neighbors=config.num_neighbors,
                   seed=seed, purity=purity, metrics=metrics,
                   siamese_weights=out_weights, provenance=final)
        if verbose:
            print(f"wrote {path} ({mode}, shape {tables[mode].shape})", flush=True)
    save_weights_h5(out_weights, params, final)
    if verbose:
        print(f"wrote {out_weights} ({time.time() - t0:.0f} s)", flush=True)
    return params, metrics


def subset_neighbors(x, siamese_weights_path, config: DGGConfig, seed=0, labels=None):
    """The original's neighbour table built inside a subset ``x`` [n, input_dim]:
    ``(table int32 [n, 1 + table_columns], info)``.

    The rows are embedded with the trained Siamese network of
    ``siamese_weights_path`` (e.g. the shipped ``pretrained/mnist_siamese.h5``), then
    every row gets its exact ``table_top`` nearest in the embedding (``knn.knn``)
    and ``knn.neighbor_table`` keeps column 0 (the row) and ``table_columns`` of them,
    drawn at random (seeded by ``seed``) or the nearest, per
    ``config.neighbor_selection``. Indices refer to rows of ``x``.

    ``info``: the source, sizes, mode, seed, seconds, ``tables`` (the table of every
    mode, for comparisons) and, with ``labels``, ``neighbor_purity`` (of the
    ``num_neighbors`` training columns of the chosen table) and ``purity`` per mode.
    Raises ValueError when ``x`` has ``table_top`` rows or fewer, or when the weight
    file is missing or does not fit the config's encoder.
    """
    x, labels = check_stage_data(x, config, "subset_neighbors", labels)
    check_table_size(len(x), config, "subset_neighbors")
    path = os.fspath(siamese_weights_path)
    if not os.path.exists(path):
        raise ValueError(f"Siamese weights {path} do not exist; build them with "
                         "reproduce/siamese_mnist.py")
    params, _ = load_any(path, config)
    net = SiameseNet(config)
    load_encoder_params(net, params, f"Siamese weights {path}")
    t = time.time()
    z = embed(net, x)
    embed_seconds = round(time.time() - t, 2)
    tables, purity, knn_seconds = tables_of_embedding(z, config, seed, labels)
    mode = config.neighbor_selection
    info = {"source": path, "n_samples": len(x), "table_top": config.table_top,
            "table_columns": config.table_columns, "neighbor_selection": mode, "seed": seed,
            "embed_seconds": embed_seconds, "knn_seconds": knn_seconds, "tables": tables}
    if purity:
        info.update(neighbor_purity=purity[mode], purity=purity,
                    purity_num_neighbors=config.num_neighbors)
    return tables[mode], info
