"""``DGG``: the whole pipeline as a scikit-learn style clustering estimator.

    from dgg_tf import DGG
    model = DGG(n_clusters=10).fit(x)          # x: [N, D] floats
    labels = model.predict(x)

``fit`` checks its parameters (``_parameter_constraints``) and the data once, then
pretrains the autoencoder (``stages.pretrain``) unless weights are given, builds the
neighbour table (exact kNN on the inputs, or the Siamese network first, as the
original), and runs DGG (GMM init from K-means, classifier pretraining, DGG training)
in memory (``api.core``), or with a run's files when ``workdir`` is set. The Keras
half of the work is ``api.fitting``, loaded on first use.

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
import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, StrOptions

from dgg_tf.backend.startup import retracing_notices_off, start_tensorflow_quietly
from dgg_tf.core.config import CHOICES, PRESETS, SIGMA_ROW, DGGConfig, q7_failing_last_batch
from dgg_tf.core.console import say
from dgg_tf.core.files import clean, write_bytes_atomic
from dgg_tf.core.inputs import check_data, check_labels
from dgg_tf.core.tables import check_table, columns_needed
from dgg_tf.core.weight_files import check_params, load_weights_h5

ESTIMATOR_FORMAT = "dgg_tf-estimator-v1"


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
    where the run's files go (config.json, history.csv, checkpoints, model.h5, the
    report), as ``run_dgg`` writes them; None (default): the run stays in memory and
    writes no file. ``verbose``: as in Keras' ``fit``: 1 (default) a line per stage and a bar per
    epoch, 2 one line per epoch, 0 nothing at all (Python ``warnings`` still show).
    TensorFlow's C++ start-up lines stay off unless ``TF_CPP_MIN_LOG_LEVEL`` is set.

    Fitted attributes: ``labels_`` (clusters of the training data), ``config_``,
    ``params_`` (all weights), ``autoencoder_`` (the pretrained autoencoder's weights
    DGG started from; not saved), ``history_`` (per-epoch records), ``adapted_``,
    ``stage_scores_`` (each stage's ACC when ``fit`` got labels: ``stage_scores``),
    ``n_features_in_``.

    ``n_init``: how many seeds to train (random_state, random_state + 1, ...); the fit
    with the lowest final training loss (the last epoch's mean step loss) is kept, a
    choice made without labels. On JAX (without ``workdir``) the seeds' DGG training
    runs together, as cells of one vmapped program (``stages.cells``), each from its own
    start (K-means and the classifier pretraining, ``api.starts``), the same numbers as
    one after another to float32 rounding; their ``history_`` then holds the epoch's
    loss (and the last epoch's full-pass ACC/NMI given ``y``). Otherwise each seed runs
    the whole fit, one after another (with ``workdir``, in its subfolder
    ``seed<random_state>``). ``n_init_results_`` records
    every seed's ``random_state``, ``loss`` and, when ``y`` is given, its ``acc`` (the
    last epoch's full-pass ACC). 1 (default): one fit, as without it.
    """

    #: Each parameter's allowed values, checked once in ``fit`` (scikit-learn's
    #: ``_validate_params``); DGGConfig checks every config_overrides value itself.
    _parameter_constraints = {
        "n_clusters": [Interval(numbers.Integral, 2, None, closed="left")],
        "variant": [StrOptions(set(PRESETS))],
        "epochs": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "pretrain_epochs": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "classifier_epochs": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "siamese_epochs": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "likelihood": [StrOptions(set(CHOICES["likelihood"])), None],
        "config_overrides": [dict, None],
        "random_state": [Interval(numbers.Integral, 0, None, closed="left")],
        "workdir": [str, os.PathLike, None],
        "verbose": [Interval(numbers.Integral, 0, 2, closed="both")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, n_clusters=10, variant="code", *, epochs=None, pretrain_epochs=None,
                 classifier_epochs=None, siamese_epochs=None, likelihood=None,
                 config_overrides=None, random_state=0, workdir=None, verbose=1, n_init=1):
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
        self.n_init = n_init

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
        if self.n_clusters > n_samples:
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
        (see ``core.weight_files.load_autoencoder``) or a params dict. Runs in memory;
        files only in ``workdir`` when it is set. Returns self."""
        self._validate_params()
        if self.n_init > 1:
            return self._fit_best_of_seeds(x, y, neighbors, weights)
        x, y, neighbors, config, adapted = self._checked_fit_inputs(x, y, neighbors)
        with retracing_notices_off():
            fitted = _keras().fit(config, x, y, neighbors, weights, self.workdir, self.verbose)
        return self._fitted(fitted, config, adapted, x)

    def _checked_fit_inputs(self, x, y, neighbors):
        """``fit``'s inputs checked: x, y, neighbours, and the config with its adapted
        settings."""
        x = check_data(x, likelihood=self._likelihood())
        config, adapted = self.make_config(*x.shape)
        y = check_labels(y, len(x))
        if isinstance(neighbors, str) and neighbors not in ("knn", "siamese"):
            raise ValueError(f"neighbors must be 'knn', 'siamese' or an (N, 1 + k) index "
                             f"table, got {neighbors!r}")
        if not isinstance(neighbors, str):
            neighbors = check_table(np.asarray(neighbors), "neighbors", len(x),
                                    config.num_neighbors).astype(np.int32)
        if adapted:
            say(self.verbose, f"DGG: settings adapted to {len(x)} samples: {adapted}")
        return x, y, neighbors, config, adapted

    def _fitted(self, fitted, config, adapted, x):
        """Set the fitted attributes from ``fitting.fit``'s ``(net, history, record,
        predictions, autoencoder params)``; returns self."""
        net, history, record, pred, params = fitted
        self._net, self.params_ = net, _keras().weights_of(net)
        self.autoencoder_, self.config_, self.adapted_ = params, config, adapted
        self.labels_ = np.asarray(pred, np.int64)
        self.history_ = list(history)
        self.stage_scores_ = record.stage_scores()
        self.n_features_in_ = x.shape[1]
        return self

    def _fit_best_of_seeds(self, x, y, neighbors, weights):
        """``n_init`` fits; keep the lowest final training loss (no labels used) and
        record every seed's result in ``n_init_results_``. On JAX without a workdir the
        seeds train together (``fitting.fit_cells``: one vmapped program), else one after
        another."""
        fits = self._seeds_together(x, y, neighbors, weights) if self.workdir is None else None
        if fits is None:
            fits = []
            for i in range(self.n_init):
                seed = self.random_state + i
                workdir = None if self.workdir is None else os.path.join(self.workdir,
                                                                         f"seed{seed}")
                one = clone(self).set_params(n_init=1, random_state=seed, workdir=workdir)
                fits.append(one.fit(x, y, neighbors, weights))
        results = []
        for one in fits:
            last = one.history_[-1]
            results.append({"random_state": one.random_state, "loss": float(last["loss"]),
                            **({"acc": float(last["full_acc"])} if "full_acc" in last else {})})
        best = fits[int(np.argmin([r["loss"] for r in results]))]
        self.__dict__.update({k: v for k, v in vars(best).items()
                              if k.endswith("_") or k == "_net"})
        self.n_init_results_ = results
        return self

    def _seeds_together(self, x, y, neighbors, weights):
        """The ``n_init`` seeds' fits trained as cells of one program (JAX), or None
        where they cannot be (TensorFlow, or seeds with different neighbour tables)."""
        clones = [clone(self).set_params(n_init=1, random_state=self.random_state + i)
                  for i in range(self.n_init)]
        checked = [one._checked_fit_inputs(x, y, neighbors) for one in clones]
        x, y, neighbors = checked[0][:3]
        with retracing_notices_off():
            fitted = _keras().fit_cells([c[3] for c in checked], x, y, neighbors, weights,
                                        self.verbose)
        if fitted is None:
            return None
        return [one._fitted(f, c[3], c[4], x) for one, f, c in zip(clones, fitted, checked)]

    def _likelihood(self):
        """The likelihood the config will have (the data's range depends on it)."""
        return (self.likelihood or (self.config_overrides or {}).get("likelihood")
                or DGGConfig.preset(self.variant).likelihood)

    # ------------------------------------------------------------------ inference
    def _network(self):
        """The fitted DGGNetwork (rebuilt from ``params_`` after ``load``)."""
        if not hasattr(self, "params_"):
            raise NotFittedError("this DGG instance is not fitted yet; call fit(x) first")
        if getattr(self, "_net", None) is None:
            self._net = _keras().network(self.config_, self.params_)
        return self._net

    def _checked(self, x):
        net = self._network()
        x = check_data(x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"x has {x.shape[1]} features, but DGG was fitted on "
                             f"{self.n_features_in_}")
        return net, x

    def transform(self, x):
        """The encoder means of ``x`` [N, D]: float32 [N, latent_dim]."""
        net, x = self._checked(x)
        return _keras().encode(net, x)

    def predict_proba(self, x):
        """Cluster probabilities f2(encoder mean) of ``x``: float32 [N, n_clusters],
        rows summing to 1."""
        net, x = self._checked(x)
        return _keras().cluster_probabilities(net, _keras().encode(net, x))

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
        self._network()
        os.makedirs(directory, exist_ok=True)
        params = {k: v for k, v in self.get_params().items() if k != "workdir"}
        _keras().save(directory, self.params_, self.config_)
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
        """A fitted DGG from a directory written by ``save`` (TensorFlow starts only
        when the model is first used)."""
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


def _keras():
    """The estimator's Keras half (``api.fitting``), loaded on first use after starting
    TensorFlow quietly, so that ``dgg_tf.DGG`` itself loads no TensorFlow."""
    start_tensorflow_quietly()
    from dgg_tf.api import fitting  # lazy: the one place the estimator starts Keras
    return fitting
