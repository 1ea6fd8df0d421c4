"""The Keras metrics of ``fit``: float64 per-step means and sums, the first
non-finite step of an epoch, and the (cluster, class) contingency of an epoch.

Keras' own Mean accumulates in float32 and weights by batch; these accumulate in
the backend's widest float (float64; float32 on JAX without x64), one unit per step,
so an epoch's figure is the original's
(1/steps) sum_s value_s. The values they receive are already summed over replicas
(``training`` all-reduces them), so every replica holds the same state and the read
is their mean.
"""
from __future__ import annotations

import keras

from dgg_tf.backend import WIDE_FLOAT as WIDE
from dgg_tf.core.metrics import scores_from_contingency


class StepMean(keras.metrics.Metric):
    """Mean over the steps of an epoch of one per-step value (float64)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, dtype=WIDE, **kwargs)
        self.total = self.add_variable((), "zeros", WIDE, "mean", "total")
        self.steps = self.add_variable((), "zeros", WIDE, "mean", "steps")

    def update_state(self, value):
        self.total.assign_add(keras.ops.cast(value, WIDE))
        self.steps.assign_add(keras.ops.cast(1.0, WIDE))

    def result(self):
        return keras.ops.divide_no_nan(self.total, self.steps)


class StepSum(keras.metrics.Metric):
    """Sum over the steps of an epoch of one per-step value (float64)."""

    def __init__(self, name, **kwargs):
        super().__init__(name=name, dtype=WIDE, **kwargs)
        self.total = self.add_variable((), "zeros", WIDE, "mean", "total")

    def update_state(self, value):
        self.total.assign_add(keras.ops.cast(value, WIDE))

    def result(self):
        return keras.ops.add(self.total, 0.0)   # a tensor, also of an on-read variable


class FirstNonFinite(keras.metrics.Metric):
    """The 1-based step of the epoch whose value was first non-finite (0: none yet)."""

    def __init__(self, name="nonfinite_step", **kwargs):
        super().__init__(name=name, dtype=WIDE, **kwargs)
        self.steps = self.add_variable((), "zeros", WIDE, "mean", "steps")
        self.first = self.add_variable((), "zeros", WIDE, "mean", "first")

    def update_state(self, value):
        self.steps.assign_add(keras.ops.cast(1.0, WIDE))
        bad = keras.ops.logical_not(keras.ops.isfinite(value))
        new = keras.ops.logical_and(bad, keras.ops.equal(self.first, 0.0))
        self.first.assign(keras.ops.where(new, self.steps.value, self.first.value))

    def result(self):
        return keras.ops.add(self.first, 0.0)


class Contingency(keras.metrics.Metric):
    """Counts of (cluster, class) pairs over an epoch; ``scores_from_contingency`` turns
    them into ACC/NMI. Each replica counts its own rows; the read sums them."""

    def __init__(self, n_clusters, n_classes, name="contingency", **kwargs):
        super().__init__(name=name, dtype=WIDE, **kwargs)
        self.n_clusters, self.n_classes = int(n_clusters), int(n_classes)
        self.counts = self.add_variable((self.n_clusters, self.n_classes), "zeros", WIDE,
                                        "sum", "counts")

    def update_state(self, pred, labels):
        a = keras.ops.one_hot(pred, self.n_clusters, dtype=WIDE)
        b = keras.ops.one_hot(labels, self.n_classes, dtype=WIDE)
        self.counts.assign_add(keras.ops.matmul(keras.ops.transpose(a), b))

    def result(self):
        return keras.ops.sum(self.counts)

    def scores(self):
        return scores_from_contingency(keras.ops.convert_to_numpy(self.counts))
