"""DGG's start, before its training: the GMM initialised from K-means on the encoder
means (section 4), and the classifier f2 pretrained on the K-means labels (section 5),
with the code's double softmax (Q5) or the plain cross-entropy."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops
from sklearn.cluster import KMeans

from dgg_tf import backend
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.metrics import cluster_acc, nmi
from dgg_tf.numerics.models import encode_mean
from dgg_tf.numerics.optimizers import TorchSGD
from dgg_tf.numerics.step_metrics import Contingency, StepMean
from dgg_tf.train.callbacks import StopWhenAsked, TrainingError
from dgg_tf.train.fit import index_batches, step_lr_callback, steps_per_epoch


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


def init_gmm(net, x, labels_true, config: DGGConfig, verbose=1, kmeans=None):
    """Set the GMM of ``net`` from K-means on the encoder means; returns the init report.
    ``kmeans``: ``kmeans_init``'s result when already computed for these means (cells
    that share it, ``api.starts``)."""
    x_mean = encode_mean(net, x)
    init = kmeans_init(x_mean, config) if kmeans is None else kmeans
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
    # the double softmax is the point of Q5: "* 1.0" (exact) keeps Keras from warning
    # that the softmax output it gets "does not represent logits"
    scores = ops.softmax(logits) * 1.0 if kind == "double_softmax" else logits
    return ops.mean(ops.sparse_categorical_crossentropy(targets, scores, from_logits=True))


class ClassifierPretrainer(backend.Trainer, keras.Model):
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

    def train_on(self, batch):
        h, target = batch["h"], batch["target"]
        local = ops.cast(ops.shape(h)[0], "float32")
        share = local / backend.batch_total(local)      # 1 on one device
        # the batch's mean loss; a replica's part of it, whose gradients the optimiser
        # sums over the replicas
        loss, _ = self.apply_loss(
            lambda: (classifier_loss(self.classifier(h), target, self.kind) * share, None))
        pred = ops.cast(ops.argmax(self.classifier(h), axis=1), "int32")
        self.loss_mean.update_state(backend.sum_over_replicas(loss))
        self.agreement.update_state(ops.cast(ops.equal(pred, target), "float32"))
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
    with backend.model_scope(net):     # f2's variables may be mirrored
        model = ClassifierPretrainer(net.classifier, config.classifier_pretrain_loss, n_classes)
        model.compile(optimizer=TorchSGD(config.classifier_lr,
                                         momentum=config.classifier_momentum,
                                         l2=config.classifier_weight_decay),
                      jit_compile=backend.JIT_COMPILE)
    columns = {"h": x_mean, "target": targets}
    if labels_true is not None:
        columns["labels"] = np.asarray(labels_true, np.int32)
    data = index_batches(len(x_mean), config.classifier_batch_size, seed, 0,
                         config.classifier_epochs, stream=1, make_batch=lambda index, e, s: {
                             k: v[index] for k, v in columns.items()})
    history, steps = [], steps_per_epoch(len(x_mean), config.classifier_batch_size)
    backend.plan_steps(model.optimizer, steps * config.classifier_epochs)
    model.fit(data, epochs=config.classifier_epochs, verbose=0, shuffle=False,
              steps_per_epoch=steps,
              callbacks=[step_lr_callback(config.classifier_lr, config.classifier_lr_gamma,
                                          config.classifier_lr_step, config.lr_schedule),
                         StopWhenAsked(), _ClassifierHistory(history, verbose)])
    return history
