"""DGG training (sections 4, 5 and 7): GMM initialisation from K-means, classifier
pretraining, and the DGG training loop with the original's schedule and evaluation.

Batches are gathered per step from the (N, 1 + neighbours) index table: the
original's N x 784 x 21 stacked tensor is never built.
"""
from __future__ import annotations

import resource
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.cluster import KMeans

from .config import DGGConfig
from .graph import SIGMA_ROW, similarity_weights
from .metrics import cluster_acc, nmi
from .models import DGGNetwork, encode_mean
from .objective import TERMS, forward_terms
from .optimizers import TorchAdam, TorchSGD, step_lr


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad inputs)."""


# ---------------------------------------------------------------- encoding
encode = encode_mean  # encoder means of all rows, in batches (models.encode_mean)


def predict(net, x, batch=5000):
    """Cluster assignment argmax f2(x_mean) of every row of x."""
    return np.argmax(net.classify(encode_mean(net, x, batch)), axis=1)


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
def classifier_loss(probs, targets, kind):
    """'double_softmax' (Q5): CrossEntropyLoss applied to softmax OUTPUTS, i.e. a second
    log-softmax over probabilities; 'cross_entropy': -log p[target]."""
    logits = probs if kind == "double_softmax" else tf.math.log(probs)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits))


def pretrain_classifier(net, x_mean, targets, config: DGGConfig, labels_true=None, seed=0, verbose=1):
    """Train f2 on the encoder means against the K-means labels; returns per-epoch history."""
    opt = TorchSGD(config.classifier_lr, momentum=config.classifier_momentum,
                   l2=config.classifier_weight_decay)
    variables = net.classifier.trainable_variables

    @tf.function
    def step(h, t):
        with tf.GradientTape() as tape:
            loss = classifier_loss(net.classify(h), t, config.classifier_pretrain_loss)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss, tf.argmax(net.classify(h), axis=1)

    rng = np.random.default_rng(seed)
    n, bs = len(x_mean), config.classifier_batch_size
    history = []
    for epoch in range(config.classifier_epochs):
        opt.learning_rate.assign(step_lr(config.classifier_lr, config.classifier_lr_gamma,
                                         config.classifier_lr_step, epoch, config.lr_schedule))
        order = rng.permutation(n)
        losses, preds = [], []
        for s in range(0, n, bs):
            idx = order[s:s + bs]
            loss, pred = step(tf.constant(x_mean[idx]), tf.constant(targets[idx], tf.int32))
            losses.append(float(loss))
            preds.append(pred.numpy())
        preds = np.concatenate(preds)
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
               "agreement_with_kmeans": float(np.mean(preds == targets[order]))}
        if labels_true is not None:
            row["acc"] = cluster_acc(labels_true[order], preds)
            row["nmi"] = nmi(labels_true[order], preds, "max")
        history.append(row)
        if verbose:
            print("classifier " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in row.items()))
    return history


# ---------------------------------------------------------------- DGG training (section 7)
def torch_bce_mean(recon, target):
    """F.binary_cross_entropy: mean over elements, log clamped at -100."""
    return -tf.reduce_mean(target * tf.maximum(tf.math.log(recon), -100.0)
                           + (1.0 - target) * tf.maximum(tf.math.log(1.0 - recon), -100.0))


# Per-step logs an epoch records as their mean (STEP_MEANS) or their sum (STEP_SUMS).
# gamma_sq_sum = sum_rk gamma_rk^2 is what the original prints as "Entropy" (a
# confidence: each row gives between 1/K and 1). The original also prints
# "Reconstruction Loss" as the SUM of recon_bce over the steps and "GMM variance1",
# our gmm_std_mean.
STEP_MEANS = ("recon_bce", "gmm_variance", "gmm_std_mean")
STEP_SUMS = ("gamma_sq_sum",)


class DGGTrainer:
    """Runs DGG epochs over a neighbour table; one instance holds the network, the
    optimiser and the random state, so a run can be checkpointed and resumed."""

    def __init__(self, net: DGGNetwork, config: DGGConfig):
        self.net, self.config = net, config
        self.optimizer = TorchAdam(config.learning_rate, l2=config.weight_decay)
        self.optimizer.build(net.trainable_variables)
        self.rng = np.random.default_rng(config.seed)
        self.epoch = 0
        self.history = []
        self._step = tf.function(self._train_step, reduce_retracing=True)

    def _train_step(self, x_nbrs, w, eps):
        net = self.net
        with tf.GradientTape() as tape:
            terms, loss, gamma = forward_terms(net, x_nbrs, w, eps, self.config)
        variables = net.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        # the original's evaluation after the step (Q12): the B samples themselves
        x_self = x_nbrs[:, 0, :]
        mean, _ = net.encoder(x_self)
        logs = {"pred": tf.argmax(net.classify(mean), axis=1),
                "recon_bce": torch_bce_mean(net.decoder(mean), x_self),
                "gmm_variance": tf.reduce_mean(tf.square(net.gmm.std)),
                "gmm_std_mean": tf.reduce_mean(net.gmm.std),
                "gamma_sq_sum": tf.reduce_sum(tf.square(gamma))}   # pre-step gamma, as printed
        return terms, loss, logs

    def batch_inputs(self, x, table, idx):
        """Gather one batch: x_nbrs [B, Nn, D], weights [B, Nn], noise [B, Nn, M]."""
        cfg = self.config
        x_nbrs = x[table[idx, :cfg.num_neighbors + 1]]
        w = similarity_weights(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode)
        eps = self.rng.standard_normal((len(idx), cfg.num_neighbors + 1, cfg.latent_dim),
                                       dtype=np.float32)
        return x_nbrs, w, eps

    def check_inputs(self, x, table, labels=None):
        cfg = self.config
        if x.ndim != 2 or x.shape[1] != cfg.input_dim:
            raise ValueError(f"x must be [N, {cfg.input_dim}], got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x contains NaN or Inf")
        if table.ndim != 2 or table.shape[0] != len(x) or table.shape[1] < cfg.num_neighbors + 1:
            raise ValueError(f"neighbour table must be [N={len(x)}, >= {cfg.num_neighbors + 1}], "
                             f"got {table.shape}")
        if not np.issubdtype(table.dtype, np.integer) or table.min() < 0 or table.max() >= len(x):
            raise ValueError(f"neighbour table indices must be integers in [0, {len(x)})")
        if labels is not None and len(labels) != len(x):
            raise ValueError(f"labels has {len(labels)} entries for {len(x)} samples")
        last = len(x) % cfg.batch_size
        if cfg.sigma_mode == "code" and 0 < last <= SIGMA_ROW:
            raise ValueError(
                f"N={len(x)} leaves a last batch of {last} samples; with sigma_mode='code' the "
                f"original raises IndexError there (Q7: sigma from batch row {SIGMA_ROW}). "
                "Choose N so the last batch is empty or has 12+ samples, or use sigma_mode='honoured'")

    def train_epoch(self, x, table, labels=None, verbose=1):
        """One epoch; returns (and appends to history) the epoch's record."""
        cfg = self.config
        x = np.asarray(x, np.float32)
        table = np.asarray(table)
        self.check_inputs(x, table, labels)
        epoch = self.epoch
        lr = step_lr(cfg.learning_rate, cfg.lr_gamma, cfg.lr_step, epoch, cfg.lr_schedule)
        self.optimizer.learning_rate.assign(lr)
        order = self.rng.permutation(len(x))
        steps = -(-len(x) // cfg.batch_size)
        bar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss"])
        sums = dict.fromkeys(TERMS + ("loss",) + STEP_MEANS + STEP_SUMS, 0.0)
        preds, t0 = [], time.time()
        for s in range(steps):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x_nbrs, w, eps = self.batch_inputs(x, table, idx)
            terms, loss, logs = self._step(tf.constant(x_nbrs), tf.constant(w), tf.constant(eps))
            loss = float(loss)
            if not np.isfinite(loss):
                raise TrainingError(f"loss is {loss} at epoch {epoch + 1}, batch {s + 1}/{steps}; "
                                    "training stopped")
            for k in TERMS:
                sums[k] += float(terms[k]) / len(idx)
            sums["loss"] += loss
            for k in STEP_MEANS + STEP_SUMS:
                sums[k] += float(logs[k])
            preds.append(logs["pred"].numpy())
            bar.update(s + 1, [("loss", sums["loss"] / (s + 1))])
        record = {"epoch": epoch + 1, "lr": lr}
        record.update({k: v if k in STEP_SUMS else v / steps for k, v in sums.items()})
        if labels is not None:
            running = np.concatenate(preds)
            full = predict(self.net, x)
            record.update(running_acc=cluster_acc(labels[order], running),
                          running_nmi=nmi(labels[order], running, "max"),
                          full_acc=cluster_acc(labels, full),
                          full_nmi=nmi(labels, full, "max"),
                          full_nmi_arithmetic=nmi(labels, full))
        record["seconds"] = time.time() - t0
        record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.epoch += 1
        self.history.append(record)
        return record

    def fit(self, x, table, labels=None, epochs=None, verbose=1, on_epoch=None):
        """Train until ``epochs`` (default config.epochs) epochs are done."""
        target = self.config.epochs if epochs is None else epochs
        while self.epoch < target:
            record = self.train_epoch(x, table, labels, verbose)
            if verbose:
                print(format_record(record), flush=True)
            if on_epoch is not None:
                on_epoch(self, record)
        return self.history

    # ---- checkpoint state: everything needed to continue bit-for-bit
    def state(self):
        return {"epoch": self.epoch, "history": self.history,
                "rng": self.rng.bit_generator.state,
                "optimizer": [np.asarray(v) for v in self.optimizer.variables]}

    def restore(self, state):
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.rng.bit_generator.state = state["rng"]
        for var, value in zip(self.optimizer.variables, state["optimizer"]):
            var.assign(value)


def format_record(r):
    keys = ["epoch", "loss", "running_acc", "running_nmi", "full_acc", "full_nmi", "lr", "seconds"]
    return " ".join(f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}"
                    for k in keys if k in r)
