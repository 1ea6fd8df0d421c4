"""What the quirk measurements share: ``AuditContext`` holds the network, the data,
the config and the caller's optional results to reuse, and computes once what several
quirks need (encoder means, K-means fits, the audit batches)."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from dgg_tf.core.config import DGGConfig
from dgg_tf.stages.dgg import encode
from dgg_tf.stages.initialise import TrainingError, kmeans_init


def audit_batches(x, table, config: DGGConfig, n_batches=10, seed=0):
    """Deterministic audit batches: ``[(idx, x_nbrs [B, Nn, D], eps [B, Nn, M])]``.

    Rows are a ``seed``-ed permutation of all samples, cut into full batches of
    ``config.batch_size``; the noise is drawn from the same generator. Every
    setting of every switch is measured on these same arrays."""
    rng = np.random.default_rng(seed)
    bsz, nn = config.batch_size, config.num_neighbors + 1
    n_full = len(x) // bsz
    if n_full < 1:
        raise ValueError(f"audit: {len(x)} samples make no full batch of {bsz}")
    order = rng.permutation(len(x))
    out = []
    for b in range(min(int(n_batches), n_full)):
        idx = order[b * bsz:(b + 1) * bsz]
        x_nbrs = np.asarray(x[table[idx, :nn]], np.float32)
        eps = rng.standard_normal((bsz, nn, config.latent_dim), dtype=np.float32)
        out.append((idx, x_nbrs, eps))
    return out


@dataclasses.dataclass
class AuditContext:
    """Inputs of ``audit`` (see its docstring) plus values computed on first use."""
    net: object
    x: np.ndarray
    table: np.ndarray
    labels: np.ndarray | None
    config: DGGConfig
    n_batches: int = 10
    seed: int = 0
    tables: dict | None = None
    stored_purity: dict | None = None
    kmeans_labels: np.ndarray | None = None
    classifier_init: dict | None = None
    classifier_epochs: int | None = None
    classifier_histories: dict | None = None
    weights_info: dict | None = None
    history: list | None = None
    verbose: int = 0
    kmeans_errors: dict = dataclasses.field(default_factory=dict)
    _kmeans: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.x = np.asarray(self.x, np.float32)
        self.table = np.asarray(self.table)
        self.labels = None if self.labels is None else np.asarray(self.labels)

    def log(self, msg):
        if self.verbose:
            print(f"audit: {msg}", flush=True)

    @functools.cached_property
    def x_mean(self):
        """Encoder means of all samples (K-means, the GMM posterior and Q5 use them)."""
        self.log("encoder means, K-means")
        return encode(self.net, self.x)

    @functools.cached_property
    def batches(self):
        """The audit batches (``audit_batches``) every batch quirk is measured on."""
        self.log("batches")
        return audit_batches(self.x, self.table, self.config, self.n_batches, self.seed)

    def kmeans(self, n_init):
        """The GMM init of K-means with ``n_init`` restarts on the encoder means, computed
        once; None if it failed (its message is then in ``kmeans_errors[n_init]``)."""
        if n_init not in self._kmeans:
            try:
                self._kmeans[n_init] = kmeans_init(self.x_mean, self.config, n_init=n_init)
            except TrainingError as e:
                self._kmeans[n_init] = None
                self.kmeans_errors[n_init] = str(e)
        return self._kmeans[n_init]

    def kmeans_targets(self):
        """Q5's targets: the caller's K-means labels, else those of the configured restarts."""
        if self.kmeans_labels is not None:
            return self.kmeans_labels
        init = self.kmeans(int(self.config.kmeans_n_init))
        return None if init is None else init["labels"]
