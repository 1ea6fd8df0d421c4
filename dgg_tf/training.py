"""DGG training (sections 4, 5 and 7): GMM initialisation from K-means, classifier
pretraining, and DGG training through ``fit`` with the original's schedule and
evaluation as callbacks.

Batches are gathered per step from the (N, 1 + neighbours) index table, on the device:
the original's N x 784 x 21 stacked tensor is never built.
"""
from __future__ import annotations

import resource
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.cluster import KMeans

from .config import SIGMA_ROW, DGGConfig, q7_failing_last_batch
from .evaluation import full_pass_scores
from .files import aligned_float32
from .graph import needs_distances, similarity_weights_tf
from .metrics import cluster_acc, nmi
from .models import DGGNetwork, encode_mean
from .objective import TERMS
from .optimizers import TorchAdam, TorchSGD, step_lr
from .tables import check_width, columns_needed
from .train.callbacks import NonFiniteStop, TrainingError
from .train.fit import batch_noise, index_batches, step_lr_callback, steps_per_epoch
from .step_metrics import Contingency, StepMean

__all__ = ["TrainingError", "DGGNetwork", "compile_dgg", "train_dgg", "dgg_dataset",
           "pretrain_classifier", "init_gmm", "encode"]


# ---------------------------------------------------------------- encoding
encode = encode_mean  # encoder means of all rows, in batches (models.encode_mean)


# ---------------------------------------------------------------- GMM init (section 4)
def kmeans_init(x_mean, config: DGGConfig, n_init=None):
    """K-means on the encoder means, then per-cluster variances with the n-1 denominator.

    Returns a dict: labels [N], mean [M, K], std [M, K] (float32), counts [K].
    """
    x_mean = np.asarray(x_mean, np.float32)
    km = KMeans(config.n_clusters, n_init=n_init or config.kmeans_n_init,
                random_state=config.kmeans_random_state).fit(x_mean)
    labels = km.labels_
    centers = km.cluster_centers_.astype(np.float64)
    counts = np.bincount(labels, minlength=config.n_clusters)
    if counts.min() < 2:
        raise TrainingError(f"K-means left a cluster with {counts.min()} member(s); the n-1 "
                            "variance is undefined")
    var = np.stack([((x_mean[labels == k] - centers[k]) ** 2).sum(0) / (counts[k] - 1)
                    for k in range(config.n_clusters)])
    return {"labels": labels, "mean": centers.T.astype(np.float32),
            "std": np.sqrt(var).T.astype(np.float32), "counts": counts}


def gmm_posterior(x_mean, mean, std, pi=None):
    """gamma_ik of the initial GMM, in float32 probability space like the original (Q3):
    prod_d N(x_id | m_dk, s_dk^2) [* pi_k] / (sum_k ... + 1e-10). ``pi=None`` is the code."""
    x_mean, mean, std = (np.asarray(a, np.float32) for a in (x_mean, mean, std))
    var = std ** 2
    log_p = 0.5 * np.sum(-np.log(var * np.float32(2 * np.pi))[None]
                         - (x_mean[:, :, None] - mean[None]) ** 2 / var[None], axis=1)
    prob = np.exp(log_p)
    if pi is not None:
        prob = prob * np.asarray(pi, np.float32)[None]
    return prob / (prob.sum(axis=1, keepdims=True) + np.float32(1e-10))


def init_gmm(net, x, labels_true, config: DGGConfig, verbose=1):
    """Set the GMM of ``net`` from K-means on the encoder means; returns the init report."""
    x_mean = encode(net, x)
    init = kmeans_init(x_mean, config)
    net.gmm.mean.assign(init["mean"])
    net.gmm.std.assign(init["std"])
    report = {"kmeans_labels": init["labels"]}
    if labels_true is not None:
        pi = init["counts"] / init["counts"].sum()
        report["kmeans_acc"] = cluster_acc(labels_true, init["labels"])
        report["kmeans_nmi"] = nmi(labels_true, init["labels"])
        for name, p in (("no_pi", None), ("with_pi", pi)):
            pred = np.argmax(gmm_posterior(x_mean, init["mean"], init["std"], p), axis=1)
            report[f"gmm_{name}_acc"] = cluster_acc(labels_true, pred)
            report[f"gmm_{name}_nmi"] = nmi(labels_true, pred)
        if verbose:
            print(f"K-means ACC={report['kmeans_acc']:.4f} NMI={report['kmeans_nmi']:.4f}; "
                  f"GMM ACC without pi={report['gmm_no_pi_acc']:.4f} (code), "
                  f"with pi={report['gmm_with_pi_acc']:.4f}")
    return report


# ---------------------------------------------------------------- classifier pretraining (section 5)
def classifier_loss(logits, targets, kind):
    """'double_softmax' (Q5, the code): CrossEntropyLoss applied to the softmax OUTPUTS,
    i.e. a second log-softmax over probabilities. 'cross_entropy': -log softmax(logits)
    of the target, computed from the logits (stable where the softmax saturates)."""
    scores = tf.nn.softmax(logits) if kind == "double_softmax" else logits
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, scores))


class ClassifierPretrainer(keras.Model):
    """Trains f2 (the DGG network's classifier layer, shared) alone on encoder means
    against the K-means labels, with the original's SGD; logs the post-step agreement
    with K-means and, with labels, the running ACC/NMI."""

    def __init__(self, classifier, kind, n_classes=None, **kwargs):
        super().__init__(**kwargs)
        self.classifier, self.kind = classifier, kind
        self.loss_mean = StepMean("loss")
        self.agreement = keras.metrics.Mean("agreement_with_kmeans")
        self.running = (Contingency(classifier.units, n_classes, "running")
                        if n_classes else None)
        self.built = True          # the classifier layer is built; nothing to infer

    def train_step(self, batch):
        h, target = batch["h"], batch["target"]
        replica = tf.distribute.get_replica_context()
        local = tf.cast(tf.shape(h)[0], tf.float32)
        share = local / replica.all_reduce("sum", local) if replica else 1.0   # 1: one device
        with tf.GradientTape() as tape:
            # the batch's mean loss; a replica's part of it, whose gradients the
            # optimiser sums over the replicas
            loss = classifier_loss(self.classifier(h), target, self.kind) * share
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        pred = tf.argmax(self.classifier(h), axis=1, output_type=tf.int32)
        self.loss_mean.update_state(replica.all_reduce("sum", loss) if replica else loss)
        self.agreement.update_state(tf.cast(tf.equal(pred, target), tf.float32))
        if self.running is not None:
            self.running.update_state(pred, batch["labels"])
        return {"loss": self.loss_mean.result(),
                "agreement_with_kmeans": self.agreement.result()}


class _ClassifierHistory(keras.callbacks.Callback):
    """One history row per classifier epoch, as the original prints it."""

    def __init__(self, history, verbose):
        super().__init__()
        self.history, self.verbose = history, verbose

    def on_epoch_begin(self, epoch, logs=None):
        if self.model.running is not None:
            self.model.running.reset_state()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "loss": float(logs["loss"]),
               "agreement_with_kmeans": float(logs["agreement_with_kmeans"])}
        if self.model.running is not None:
            scores = self.model.running.scores()
            row.update(acc=scores["acc"], nmi=scores["nmi"])
        self.history.append(row)
        if self.verbose:
            print("classifier " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in row.items()), flush=True)


def pretrain_classifier(net, x_mean, targets, config: DGGConfig, labels_true=None, seed=0,
                        verbose=1):
    """Train f2 on the encoder means against the K-means labels through ``fit``; returns
    the per-epoch history (loss, agreement_with_kmeans, and acc/nmi given labels)."""
    x_mean = np.asarray(x_mean, np.float32)
    targets = np.asarray(targets, np.int32)
    n_classes = None if labels_true is None else int(np.max(labels_true)) + 1
    with net.distribute_strategy.scope():     # f2's variables may be mirrored
        model = ClassifierPretrainer(net.classifier, config.classifier_pretrain_loss, n_classes)
        model.compile(optimizer=TorchSGD(config.classifier_lr,
                                         momentum=config.classifier_momentum,
                                         l2=config.classifier_weight_decay), jit_compile=False)
    columns = {"h": tf.constant(x_mean), "target": tf.constant(targets)}
    if labels_true is not None:
        columns["labels"] = tf.constant(np.asarray(labels_true, np.int32))
    data = index_batches(len(x_mean), config.classifier_batch_size, seed, 0,
                         config.classifier_epochs, stream=1, make_batch=lambda index, e, s: {
                             k: tf.gather(v, index) for k, v in columns.items()})
    history = []
    model.fit(data, epochs=config.classifier_epochs, verbose=0, shuffle=False,
              steps_per_epoch=steps_per_epoch(len(x_mean), config.classifier_batch_size),
              callbacks=[step_lr_callback(config.classifier_lr, config.classifier_lr_gamma,
                                          config.classifier_lr_step, config.lr_schedule),
                         _ClassifierHistory(history, verbose)])
    return history


# ---------------------------------------------------------------- DGG training (section 7)
def compile_dgg(net: DGGNetwork, config: DGGConfig = None, steps_per_execution=1):
    """Compile ``net`` with the original's optimiser: PyTorch's Adam with L2 added to the
    gradient. Not XLA-compiled as a whole (jit_compile=False): the step keeps the
    kernels, and so the float32 rounding, of the step the replay check compares."""
    config = config or net.config
    net.compile(optimizer=TorchAdam(config.learning_rate, l2=config.weight_decay,
                                    warmup_steps=config.lr_warmup_steps),
                jit_compile=False, steps_per_execution=steps_per_execution)
    net.optimizer.build(net.trainable_variables)   # its state can be restored before fit
    return net


class BatchFeed:
    """What ``fit``'s steps read on the device: the data x, from which each batch's
    rows are gathered (one copy per device under tf.distribute), the graph weights'
    settings, and the running (cluster, label) counts of the epoch."""

    def __init__(self, x, config: DGGConfig, n_classes=None):
        self.config = config
        self.x = self._on_device(x)
        self.running = (Contingency(config.n_clusters, n_classes, "running")
                        if n_classes else None)

    def _on_device(self, x):
        """x where the steps run. Under tf.distribute, a variable mirrored on every
        device. Otherwise TensorFlow reads the (64-byte aligned) array's own memory
        through DLPack: tf.convert_to_tensor would add a copy of x and a transient
        second one (440 MB for MNIST); on a GPU the one copy made is the device's."""
        if tf.distribute.has_strategy():
            return tf.Variable(x, trainable=False, name="feed_x")
        self.host = aligned_float32(x)          # kept alive as long as the tensor
        x_t = tf.experimental.dlpack.from_dlpack(self.host.__dlpack__())
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            with tf.device(gpus[0].name):
                x_t = tf.identity(x_t)
        return x_t

    def assemble(self, batch):
        """x_nbrs, w, eps, labels of one batch from its indices and noise."""
        cfg = self.config
        x_nbrs = tf.gather(self.x, batch["neighbors"])
        sigma_row = (tf.gather(self.x, batch["sigma_neighbors"][0])
                     if "sigma_neighbors" in batch else None)
        w = similarity_weights_tf(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode, sigma_row)
        return x_nbrs, w, batch["eps"], batch.get("labels")


def dgg_dataset(table, labels, config: DGGConfig, first_epoch=0, last_epoch=None):
    """tf.data batches for ``fit``: each is a dict of the neighbour indices [b, Nn], the
    noise [b, Nn, M], the labels [b] if known, and for the Q7 sigma quirk the indices
    of batch row 11 (repeated per row, so that every replica gets them)."""
    nn = columns_needed(config.num_neighbors)
    table_t = tf.constant(np.asarray(table)[:, :nn].astype(np.int32))
    labels_t = None if labels is None else tf.constant(np.asarray(labels, np.int32))
    sigma_row = needs_distances(config.similarity) and config.sigma_mode == "code"

    def make(index, epoch, step):
        nbrs = tf.gather(table_t, index)
        b = tf.shape(index)[0]
        batch = {"neighbors": nbrs,
                 "eps": batch_noise(tf.stack([b, nn, config.latent_dim]), config.seed,
                                    epoch, step)}
        if sigma_row:
            batch["sigma_neighbors"] = tf.tile(nbrs[SIGMA_ROW:SIGMA_ROW + 1], [b, 1])
        if labels_t is not None:
            batch["labels"] = tf.gather(labels_t, index)
        return batch
    last = config.epochs if last_epoch is None else last_epoch
    return index_batches(len(table), config.batch_size, config.seed, first_epoch, last,
                         make, stream=2)


def check_training_inputs(x, table, labels, config: DGGConfig):
    """Everything about the data that would stop training later, checked up front."""
    if x.ndim != 2 or x.shape[1] != config.input_dim:
        raise ValueError(f"x must be [N, {config.input_dim}], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or Inf")
    if table.ndim != 2 or table.shape[0] != len(x):
        raise ValueError(f"neighbour table must be [N={len(x)}, >= "
                         f"{columns_needed(config.num_neighbors)}], got {table.shape}")
    check_width(table, "for training", config.num_neighbors)
    if not np.issubdtype(table.dtype, np.integer) or table.min() < 0 or table.max() >= len(x):
        raise ValueError(f"neighbour table indices must be integers in [0, {len(x)})")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"labels has {len(labels)} entries for {len(x)} samples")
    last = q7_failing_last_batch(len(x), config.batch_size, config.sigma_mode)
    if last:
        raise ValueError(
            f"N={len(x)} leaves a last batch of {last} samples; with sigma_mode='code' the "
            f"original raises IndexError there (Q7: sigma from batch row {SIGMA_ROW}). "
            "Choose N so the last batch is empty or has 12+ samples, or use sigma_mode='honoured'")


def check_steps_per_execution(n, batch_size, per_execution):
    """Keras runs ``per_execution`` steps per call even across the end of an epoch, so
    with epochs of batches keyed by (seed, epoch, step) it must divide an epoch's steps."""
    steps = steps_per_epoch(n, batch_size)
    if per_execution > 1 and steps % per_execution:
        fits = [d for d in range(per_execution, 0, -1) if steps % d == 0][0]
        raise ValueError(f"steps_per_execution={per_execution} must divide the {steps} steps "
                         f"of an epoch (N={n}, batch {batch_size}); use e.g. {fits}")


class EpochRecorder(keras.callbacks.Callback):
    """Turns each epoch into the run's history record (the original's printout: the
    step means and sums, lr, running and full-pass ACC/NMI), appended to ``history``
    before the callbacks that follow it (files, TensorBoard) run."""

    def __init__(self, x, labels, history, feed):
        super().__init__()
        self.x, self.labels, self.history, self.feed = x, labels, history, feed

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time()
        if self.feed.running is not None:
            self.feed.running.reset_state()

    def on_epoch_end(self, epoch, logs=None):
        cfg = self.model.config
        record = {"epoch": epoch + 1,
                  "lr": step_lr(cfg.learning_rate, cfg.lr_gamma, cfg.lr_step, epoch,
                                cfg.lr_schedule)}
        record.update({m.name: float(m.result()) for m in self.model.step_metrics[:-1]})
        if self.labels is not None:
            running = self.feed.running.scores()
            record.update(running_acc=running["acc"], running_nmi=running["nmi"],
                          **full_pass_scores(self.model, self.x, self.labels))
        record["seconds"] = time.time() - self.t0
        record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.history.append(record)


def _term_metrics(net):
    """The step metrics of the loss terms (objective.TERMS), for the non-finite stop."""
    return [m for m in net.step_metrics if m.name in TERMS]


def _nonfinite_hints(cfg: DGGConfig):
    """What a non-finite term most likely means under ``cfg``."""
    if cfg.prior != "code":
        return {}
    return {"prior": "the code prior takes log(pc) with no epsilon (Q9): a cluster whose "
                     "softmax output is exactly 0 over a whole neighbourhood gives 0 * log 0 "
                     "= NaN, as in the original; prior=paper takes the limit 0 there"}


def train_dgg(net: DGGNetwork, x, table, labels=None, *, history=None, initial_epoch=0,
              epochs=None, callbacks=(), verbose=1):
    """Train a compiled ``net`` (``compile_dgg``) through ``fit`` from ``initial_epoch``
    to ``epochs`` (default ``net.config.epochs``); returns the history (a list of epoch records, extended in
    place when given). The schedule (Q8), the non-finite stop and the record are
    callbacks; ``callbacks`` (yours) run after them, when ``history[-1]`` is the epoch's
    record. Checks its inputs first (an entrance); ``fit_dgg`` trusts them."""
    cfg = net.config
    x = np.asarray(x, np.float32)
    table = np.asarray(table)
    labels = None if labels is None else np.asarray(labels)
    check_training_inputs(x, table, labels, cfg)
    check_steps_per_execution(len(x), cfg.batch_size, net.steps_per_execution)
    return fit_dgg(net, x, table, labels, history=history, initial_epoch=initial_epoch,
                   epochs=epochs, callbacks=callbacks, verbose=verbose)


def fit_dgg(net: DGGNetwork, x, table, labels=None, *, history=None, initial_epoch=0,
            epochs=None, callbacks=(), verbose=1):
    """``train_dgg`` on inputs already checked (float32 x, integer table, labels or
    None): what ``run_dgg`` calls after its own checks."""
    cfg = net.config
    history = [] if history is None else history
    n_classes = None if labels is None else int(labels.max()) + 1
    feed = net.feed = BatchFeed(x, cfg, n_classes)
    net.train_function = None      # a traced step holds the previous call's data: retrace
    steps = steps_per_epoch(len(x), cfg.batch_size)
    own = [step_lr_callback(cfg.learning_rate, cfg.lr_gamma, cfg.lr_step, cfg.lr_schedule),
           NonFiniteStop(steps, net.step_metrics[-1], _term_metrics(net), _nonfinite_hints(cfg)),
           EpochRecorder(x, labels, history, feed)]
    epochs = cfg.epochs if epochs is None else epochs
    try:
        if initial_epoch < epochs:
            net.fit(dgg_dataset(table, labels, cfg, initial_epoch, epochs),
                    epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                    callbacks=own + list(callbacks), verbose=verbose, shuffle=False)
    finally:
        net.feed = None
    return history


def format_record(r):
    keys = ["epoch", "loss", "running_acc", "running_nmi", "full_acc", "full_nmi", "lr", "seconds"]
    return " ".join(f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}"
                    for k in keys if k in r)
