"""Keras callbacks that watch a DGG run. Collapse warnings (rules: ``core.collapse``): after each DGG epoch, a run that uses fewer than half the clusters
(full-pass predictions), or whose full-pass ACC is below half the pretrained
classifier's, is said to collapse. The console says so, the epoch's record keeps
``clusters_used`` and ``collapse`` (0/1), and the run's report lists those epochs.
Training goes on.

Where a collapse starts: the full-pass ACC after the first steps of a fresh run
(``first_steps_callback``). Adam's first update moves every weight by the learning rate
(m/sqrt(v) = g/|g| at step 1), 1-15 % of each encoder tensor's norm, and that alone
costs the pretrained classifier most of its accuracy (docs/results.md)."""
from __future__ import annotations

import sys

import keras

from dgg_tf.core.collapse import SHORT_RUN_EPOCHS, SHORT_RUN_NOTE, collapse_reasons
from dgg_tf.core.metrics import clusters_used
from dgg_tf.numerics.evaluation import full_pass_scores, predict


class CollapseWatch(keras.callbacks.Callback):
    """Flags each epoch's record (``history[-1]``, written by ``stages.dgg.fit_dgg``:
    ``clusters_used``, ``collapse``) and prints a warning on a collapse; run it before
    the callbacks that save the record. A run of fewer than ``SHORT_RUN_EPOCHS`` epochs
    says why that is expected; ``verbose=0`` flags without printing. What it watches
    is given by ``watch(...)``, or by the run itself (``on_stages_end``, as an observer
    of ``api.core``)."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose, self.stream = verbose, stream

    def watch(self, history, x, n_clusters, reference_acc=None, epochs=None):
        self.history, self.x, self.n_clusters = history, x, n_clusters
        self.reference_acc = reference_acc
        self.note = f"; {SHORT_RUN_NOTE}" if epochs is not None and epochs < SHORT_RUN_EPOCHS \
            else ""
        return self

    def on_stages_end(self, run):
        self.watch(run.history, run.inputs.x, run.config.n_clusters, run.classifier_acc,
                   run.config.epochs)

    def on_epoch_end(self, epoch, logs=None):
        record = self.history[-1]
        if record.get("clusters_used") is None:
            record["clusters_used"] = clusters_used(predict(self.model, self.x))
        reasons = collapse_reasons(record, self.n_clusters, self.reference_acc)
        record["collapse"] = int(bool(reasons))
        if reasons and self.verbose:
            print(f"WARNING: epoch {record.get('epoch', epoch + 1)}: the clustering has "
                  f"collapsed ({'; '.join(reasons)}); training goes on{self.note}",
                  file=self.stream or sys.stdout, flush=True)


def collapse_callback(history, x, n_clusters, reference_acc=None, stream=None, epochs=None,
                      verbose=1):
    """A ``CollapseWatch`` of ``history`` (epoch records of a run on ``x``)."""
    return CollapseWatch(verbose, stream).watch(history, x, n_clusters, reference_acc, epochs)


def first_steps_callback(records, x, labels, steps=(1,), reference_acc=None, say=print):
    """A Keras callback that appends {step, full_acc, full_nmi, clusters_used} to
    ``records`` after each listed step of a run's first epoch (epoch index 0: a resumed
    run records nothing; with several steps per call, after the first call that reaches
    the step) and prints it next to the pretrained classifier's ACC. Reads predictions
    only: training is unchanged."""

    pending = sorted({int(s) for s in steps})

    class FirstSteps(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            done = batch + 1
            if self.epoch or not pending or done < pending[0]:
                return
            while pending and pending[0] <= done:
                pending.pop(0)
            scores = full_pass_scores(self.model, x, labels)
            entry = {"step": done, **{k: scores[k] for k in ("full_acc", "full_nmi",
                                                            "clusters_used")}}
            records.append(entry)
            ref = "" if reference_acc is None else f" (pretrained classifier {reference_acc:.4f})"
            say(f"after DGG step {done}: full-pass ACC {entry['full_acc']:.4f}, "
                f"{entry['clusters_used']} clusters in use{ref}")
    return FirstSteps()
