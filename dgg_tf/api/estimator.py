"""``DGG``: the whole pipeline as a scikit-learn style clustering estimator.

    from dgg_tf import DGG
    model = DGG(n_clusters=10).fit(x)          # x: [N, D] floats
    labels = model.predict(x)

``fit`` pretrains the autoencoder (``dgg_tf.pretrain``) unless weights are given,
builds the neighbour table (exact kNN on the inputs, or the Siamese network first, as
the original), then runs ``pipeline.run_dgg`` (GMM init from K-means, classifier
pretraining, DGG training) in a temporary or given work directory.

Defaults. Every setting not named here comes from ``DGGConfig.preset(variant)``, so
the estimator trains what the reproduction trains (300 DGG epochs, section-9
pretraining, 500-500-2000 widths); ``input_dim`` comes from the data. Small data
adapts three settings the preset sizes for MNIST's 70000 samples, and only those
not set in ``config_overrides``: ``table_top`` (the neighbours searched, 100) and
``table_columns`` (kept, 40) shrink to at most N - 1, and, under the code's
``sigma_mode`` (Q7: a last batch of 1..11 samples is an error), ``batch_size`` drops
from 100 to the largest size that leaves no such batch. What was adapted is in
``adapted_``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import NotFittedError

from dgg_tf.backend.startup import retracing_notices_off, start_tensorflow_quietly
from dgg_tf.core.config import SIGMA_ROW, DGGConfig, q7_failing_last_batch
from dgg_tf.core.console import say, stage
from dgg_tf.core.files import clean, write_bytes_atomic
from dgg_tf.core.tables import check_table, columns_needed

ESTIMATOR_FORMAT = "dgg_tf-estimator-v1"


def check_array(x, name="x"):
    """A finite float32 [N, D] copy of ``x``, or a ValueError saying what is wrong."""
    try:
        x = np.asarray(x, np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a numeric array: {e}") from None
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N samples, D features], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or Inf)")
    return x


def small_data_settings(config: DGGConfig, n, fixed=()):
    """The settings that ``n`` samples need changed (those not in ``fixed``): neighbour
    search widths at most n - 1 and a batch size without a Q7 last batch."""
    needed = columns_needed(config.num_neighbors)
    if n < needed:
        raise ValueError(f"{n} samples are fewer than the {needed} that num_neighbors="
                         f"{config.num_neighbors} needs (each sample and its neighbours); "
                         "use more data or a smaller num_neighbors")
    out = {}
    if "table_top" not in fixed and config.table_top > n - 1:
        out["table_top"] = n - 1
    top = out.get("table_top", config.table_top)
    if "table_columns" not in fixed and config.table_columns > top:
        out["table_columns"] = max(top, config.num_neighbors)
    bad = lambda b: q7_failing_last_batch(n, b, config.sigma_mode)  # noqa: E731
    if "batch_size" not in fixed and bad(config.batch_size):
        sizes = [b for b in range(config.batch_size, SIGMA_ROW, -1) if not bad(b)]
        if sizes:
            out["batch_size"] = sizes[0]
    return out


class DGG(ClusterMixin, BaseEstimator):
    """DGG clustering (Yang et al., ICCV 2019) as a scikit-learn estimator.

    ``n_clusters``: K. ``variant``: "code" (the original, quirk for quirk) or "paper".
    ``epochs``, ``pretrain_epochs`` (each autoencoder pretraining stage: the four
    greedy layers and the fine-tuning, or the DEC-style run), ``classifier_epochs``
    and ``siamese_epochs``: stage lengths, None for the preset's. ``likelihood``:
    "bernoulli" (data in [0, 1]) or "gaussian" (real-valued), None for the preset's
    (bernoulli). ``config_overrides``: any other ``DGGConfig`` field (widths,
    num_neighbors, switches...). ``random_state``: seed of every stage. ``workdir``:
    where run_dgg writes its files (None: a temporary directory, removed after
    fit). ``verbose``: as in Keras' ``fit``: 1 (default) a line per stage and a bar per
    epoch, 2 one line per epoch, 0 nothing at all (Python ``warnings`` still show).
    TensorFlow's C++ start-up lines stay off unless ``TF_CPP_MIN_LOG_LEVEL`` is set.

    Fitted attributes: ``labels_`` (clusters of the training data), ``config_``,
    ``params_`` (all weights), ``autoencoder_`` (the pretrained autoencoder's weights
    DGG started from; not saved), ``history_`` (per-epoch records), ``adapted_``,
    ``stage_scores_`` (each stage's ACC when ``fit`` got labels: ``stage_scores``),
    ``n_features_in_``.
    """

    def __init__(self, n_clusters=10, variant="code", *, epochs=None, pretrain_epochs=None,
                 classifier_epochs=None, siamese_epochs=None, likelihood=None,
                 config_overrides=None, random_state=0, workdir=None, verbose=1):
        self.n_clusters = n_clusters
        self.variant = variant
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.classifier_epochs = classifier_epochs
        self.siamese_epochs = siamese_epochs
        self.likelihood = likelihood
        self.config_overrides = config_overrides
        self.random_state = random_state
        self.workdir = workdir
        self.verbose = verbose

    # ------------------------------------------------------------------ configuration
    def _named_settings(self):
        """The DGGConfig fields this estimator's own parameters set."""
        named = {"n_clusters": self.n_clusters, "seed": self.random_state,
                 "kmeans_random_state": self.random_state}
        for key in ("epochs", "classifier_epochs", "siamese_epochs", "likelihood"):
            if getattr(self, key) is not None:
                named[key] = getattr(self, key)
        if self.pretrain_epochs is not None:
            named.update(layerwise_epochs=self.pretrain_epochs,
                         finetune_epochs=self.pretrain_epochs, dec_epochs=self.pretrain_epochs)
        return named

    def make_config(self, n_samples, n_features):
        """The DGGConfig that ``fit`` uses for data of this shape; returns (config,
        adapted settings). Raises ValueError on impossible settings."""
        overrides = dict(self.config_overrides or {})
        named = self._named_settings()
        clash = sorted(set(overrides) & (set(named) | {"input_dim"}))
        if clash:
            raise ValueError(f"config_overrides sets {', '.join(clash)}, which DGG's own "
                             "parameters (or the data) set; use those parameters instead")
        if not isinstance(self.n_clusters, (int, np.integer)) or not \
                2 <= self.n_clusters <= n_samples:
            raise ValueError(f"n_clusters must be an integer in [2, N={n_samples}], "
                             f"got {self.n_clusters!r}")
        config = DGGConfig.preset(self.variant).replace(
            **overrides, **named, input_dim=int(n_features))
        adapted = small_data_settings(config, n_samples, fixed=set(overrides))
        return config.replace(**adapted), adapted

    # ------------------------------------------------------------------ fitting
    def fit(self, x, y=None, neighbors="knn", weights=None):
        """Cluster ``x`` [N, D]: pretrain the autoencoder (unless ``weights``), build the
        neighbour table, run DGG. ``y`` (optional labels) is used only for the recorded
        metrics. ``neighbors``: "knn" (exact kNN on the inputs), "siamese" (train the
        Siamese network on the inputs first, as the original), or an (N, 1 + k) index
        table (column 0 the sample itself). ``weights``: a pretrained autoencoder file
        (see ``weights.load_autoencoder``) or a params dict. Returns self."""
        start_tensorflow_quietly()
        with retracing_notices_off():
            return self._fit(x, y, neighbors, weights)

    def _fit(self, x, y, neighbors, weights):
        from dgg_tf.api.pipeline import run_dgg  # lazy: TF starts in fit, quietly
        from dgg_tf.numerics.objective import check_data_range  # lazy: TF starts in fit, quietly
        x = check_array(x)
        config, adapted = self.make_config(*x.shape)
        check_data_range(x, config.likelihood, "x")
        if y is not None and len(y) != len(x):
            raise ValueError(f"y has {len(y)} labels for {len(x)} samples")
        if isinstance(neighbors, str) and neighbors not in ("knn", "siamese"):
            raise ValueError(f"neighbors must be 'knn', 'siamese' or an (N, 1 + k) index "
                             f"table, got {neighbors!r}")
        if not isinstance(neighbors, str):
            neighbors = check_table(np.asarray(neighbors), "neighbors", len(x),
                                    config.num_neighbors).astype(np.int32)
        if adapted:
            say(self.verbose, f"DGG: settings adapted to {len(x)} samples: {adapted}")
        params = self._autoencoder(x, config, weights)
        self.autoencoder_ = params
        tables, info = self._tables(x, config, neighbors, params)
        workdir = self.workdir
        scratch = tempfile.mkdtemp(prefix="dgg_") if workdir is None else None
        try:
            result = run_dgg(config, x, y, neighbors=tables, weights=params,
                             workdir=workdir or os.path.join(scratch, "run"), audit=False,
                             verbose=self.verbose, info={"source": "dgg_tf.DGG.fit"},
                             neighbor_info=info)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        from dgg_tf.numerics.weights import get_params  # lazy: TF starts in fit, quietly
        self._net = result["network"]
        self.params_ = get_params(self._net)
        self.config_, self.adapted_ = config, adapted
        self.labels_ = np.asarray(result["predictions"], np.int64)
        self.history_ = list(result["history"])
        self.stage_scores_ = stage_scores(result["config_json"])
        self.n_features_in_ = x.shape[1]
        return self

    def _autoencoder(self, x, config, weights):
        """The autoencoder's params: pretrained here when ``weights`` is None."""
        from dgg_tf.numerics.weights import check_params  # lazy: TF starts in fit, quietly
        from dgg_tf.numerics.weights import load_autoencoder
        if weights is None:
            from dgg_tf.stages.pretrain import \
                pretrain_autoencoder  # lazy: TF starts in fit, quietly
            with stage(self.verbose, f"DGG: autoencoder pretraining ({config.pretrain_schedule})"):
                params, _ = pretrain_autoencoder(x, config, seed=config.seed,
                                                 verbose=1 if self.verbose == 1 else 0)
            return params
        if isinstance(weights, dict):
            return check_params(dict(weights), config, "weights")
        return load_autoencoder(os.fspath(weights), config)[0]

    def _tables(self, x, config, neighbors, params):
        """{selection mode: table} and a note on how it was made (the embedding
        or inputs go to ``knn.tables_of_embedding``, the one builder)."""
        if not isinstance(neighbors, str):
            return {config.neighbor_selection: neighbors}, {"source": "arrays"}
        space = x
        if neighbors == "siamese":
            from dgg_tf.numerics.models import encode_mean  # lazy: TF starts in fit, quietly
            from dgg_tf.numerics.weights import set_params  # lazy: TF starts in fit, quietly
            from dgg_tf.stages.siamese import SiameseNet  # lazy: TF starts in fit, quietly
            from dgg_tf.stages.siamese import train_siamese
            with stage(self.verbose, f"DGG: Siamese training ({config.siamese_epochs} epochs)"):
                siamese, _ = train_siamese(x, config, init_params=params, seed=config.seed,
                                           verbose=1 if self.verbose == 1 else 0)
            net = SiameseNet(config)
            set_params(net, siamese, partial=True)
            space = encode_mean(net, x)
        from dgg_tf.numerics.knn import tables_of_embedding  # lazy: TF starts in fit, quietly
        with stage(self.verbose, "DGG: neighbour tables"):
            tables, _, _ = tables_of_embedding(space, config, seed=config.seed)
        note = (f"exact {config.table_top}-NN on the {'Siamese embedding' if space is not x else 'inputs'}, "
                f"then neighbor_selection={config.neighbor_selection}")
        return tables, {"source": neighbors, "note": note}

    # ------------------------------------------------------------------ inference
    def _network(self):
        """The fitted DGGNetwork (rebuilt from ``params_`` after ``load``)."""
        if not hasattr(self, "params_"):
            raise NotFittedError("this DGG instance is not fitted yet; call fit(x) first")
        if getattr(self, "_net", None) is None:
            from dgg_tf.numerics.models import DGGNetwork  # lazy: TF starts in fit, quietly
            from dgg_tf.numerics.weights import set_params  # lazy: TF starts in fit, quietly
            self._net = DGGNetwork(self.config_)
            set_params(self._net, self.params_)
        return self._net

    def _checked(self, x):
        net = self._network()
        x = check_array(x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"x has {x.shape[1]} features, but DGG was fitted on "
                             f"{self.n_features_in_}")
        return net, x

    def transform(self, x):
        """The encoder means of ``x`` [N, D]: float32 [N, latent_dim]."""
        from dgg_tf.numerics.models import encode_mean  # lazy: TF starts in fit, quietly
        net, x = self._checked(x)
        return encode_mean(net, x)

    def predict_proba(self, x):
        """Cluster probabilities f2(encoder mean) of ``x``: float32 [N, n_clusters],
        rows summing to 1."""
        net, x = self._checked(x)
        return np.asarray(net.classify(self.transform(x)), np.float32)

    def predict(self, x):
        """The cluster of every row of ``x``: int64 [N] (argmax of ``predict_proba``)."""
        return np.argmax(self.predict_proba(x), axis=1).astype(np.int64)

    def fit_predict(self, x, y=None, **fit_params):
        """``fit(x, y, ...)`` then the training data's clusters (``labels_``)."""
        return self.fit(x, y, **fit_params).labels_

    # ------------------------------------------------------------------ persistence
    def save(self, directory):
        """Write the fitted model to ``directory``: model.h5 (all weights) and
        estimator.json (parameters, config, fitted attributes); both atomically."""
        from dgg_tf.numerics.weights import save_weights_h5  # lazy: TF starts in fit, quietly
        self._network()
        os.makedirs(directory, exist_ok=True)
        params = {k: v for k, v in self.get_params().items() if k != "workdir"}
        save_weights_h5(os.path.join(directory, "model.h5"), self.params_,
                        {"source": "dgg_tf.DGG.save", "config": self.config_.to_dict()})
        state = {"format": ESTIMATOR_FORMAT, "params": params,
                 "config": self.config_.to_dict(), "adapted": self.adapted_,
                 "n_features_in": int(self.n_features_in_),
                 "labels": self.labels_.tolist(), "history": self.history_,
                 "stage_scores": self.stage_scores_}
        text = json.dumps(clean(state), indent=1)
        write_bytes_atomic(os.path.join(directory, "estimator.json"),
                           lambda f: f.write(text), mode="w")
        return directory

    @classmethod
    def load(cls, directory):
        """A fitted DGG from a directory written by ``save``."""
        from dgg_tf.numerics.weights import check_params  # lazy: TF starts in fit, quietly
        from dgg_tf.numerics.weights import load_weights_h5
        path = os.path.join(directory, "estimator.json")
        if not os.path.exists(path):
            raise ValueError(f"{directory} holds no estimator.json (written by DGG.save)")
        with open(path) as f:
            state = json.load(f)
        if state.get("format") != ESTIMATOR_FORMAT:
            raise ValueError(f"{path} is not a {ESTIMATOR_FORMAT} file")
        model = cls(**state["params"])
        model.config_ = DGGConfig.from_dict(state["config"])
        params, _ = load_weights_h5(os.path.join(directory, "model.h5"))
        model.params_ = check_params(params, model.config_, "DGG.load")
        model.adapted_, model.history_ = state["adapted"], state["history"]
        model.n_features_in_ = state["n_features_in"]
        model.stage_scores_ = state.get("stage_scores", {})
        model.labels_ = np.asarray(state["labels"], np.int64)
        model._net = None
        return model


#: The stages ``stage_scores`` reads from a run's config.json record, in pipeline order.
STAGES = ("neighbor_purity", "kmeans_acc", "gmm_init_acc", "classifier_acc", "step1_acc",
          "final_acc")


def stage_scores(run_info):
    """Each stage's accuracy from a run's config.json record (``run_dgg``'s
    ``config_json``): the neighbour table's purity, K-means on the encoder means, the
    initial GMM's posterior as the code computes it (Q3, no pi), the pretrained
    classifier, the full pass after DGG's first step, and the final full pass. Empty
    without labels (none of them can be measured); a stage the run did not reach is None."""
    gmm = run_info.get("gmm_init") or {}
    if "kmeans_acc" not in gmm:
        return {}
    first = [s for s in run_info.get("first_steps") or [] if s.get("step") == 1]
    return {"neighbor_purity": (run_info.get("neighbors") or {}).get("purity"),
            "kmeans_acc": gmm.get("kmeans_acc"),
            "gmm_init_acc": gmm.get("gmm_no_pi_acc"),
            "classifier_acc": (run_info.get("classifier") or {}).get("acc"),
            "step1_acc": first[0]["full_acc"] if first else None,
            "final_acc": (run_info.get("finished") or {}).get("acc")}
