"""Collapse warnings: after each DGG epoch, a run that uses fewer than half the clusters
(full-pass predictions), or whose full-pass ACC is below half the pretrained
classifier's, is said to collapse. The console says so, the epoch's record keeps
``clusters_used`` and ``collapse`` (0/1), and the run's report lists those epochs.
Training goes on.

Where a collapse starts: the full-pass ACC after the first steps of a fresh run
(``first_steps_callback``). Adam's first update moves every weight by the learning rate
(m/sqrt(v) = g/|g| at step 1), 1-15 % of each encoder tensor's norm, and that alone
costs the pretrained classifier most of its accuracy (see the README's Results)."""
from __future__ import annotations

import sys

from .metrics import clusters_used


def classifier_acc(classifier_history):
    """ACC of the pretrained classifier (the last epoch's ``acc``), or None without labels."""
    last = (classifier_history or [{}])[-1]
    return last.get("acc")


def collapse_reasons(record, n_clusters, reference_acc=None):
    """Why the epoch ``record`` counts as a collapse (empty list: it does not)."""
    reasons = []
    used = record.get("clusters_used")
    if used is not None and used < n_clusters / 2:
        reasons.append(f"only {used} of {n_clusters} clusters in use")
    acc = record.get("full_acc")
    if acc is not None and reference_acc and acc < 0.5 * reference_acc:
        reasons.append(f"full-pass ACC {acc:.4f} is below half the pretrained "
                       f"classifier's {reference_acc:.4f}")
    return reasons


def collapse_epochs(history):
    """The records of ``history`` flagged as a collapse: [{epoch, clusters_used, full_acc}]."""
    return [{"epoch": r.get("epoch"), "clusters_used": r.get("clusters_used"),
             "full_acc": r.get("full_acc")} for r in history or [] if r.get("collapse")]


#: Runs shorter than this are expected to end inside the first-step dip.
SHORT_RUN_EPOCHS = 50
SHORT_RUN_NOTE = ("expected in a run this short: DGG's first Adam step costs the "
                  "pretrained classifier most of its accuracy, and short runs stay below it "
                  "(README, Results)")


def collapse_callback(history, x, n_clusters, reference_acc=None, stream=None, epochs=None,
                      verbose=1):
    """A Keras callback that flags each epoch's record (``history[-1]``, written by
    ``training.train_dgg``) and prints a warning on a collapse; run it before the
    callbacks that save the record. A run of fewer than ``SHORT_RUN_EPOCHS`` epochs
    (``epochs``) says why that is expected; ``verbose=0`` flags without printing."""
    note = f"; {SHORT_RUN_NOTE}" if epochs is not None and epochs < SHORT_RUN_EPOCHS else ""
    import keras  # lazy: the report uses collapse, without TF

    from .evaluation import predict  # lazy: the report uses collapse, without TF

    class CollapseWatch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record = history[-1]
            if record.get("clusters_used") is None:
                record["clusters_used"] = clusters_used(predict(self.model, x))
            reasons = collapse_reasons(record, n_clusters, reference_acc)
            record["collapse"] = int(bool(reasons))
            if reasons and verbose:
                print(f"WARNING: epoch {record.get('epoch', epoch + 1)}: the clustering has "
                      f"collapsed ({'; '.join(reasons)}); training goes on{note}",
                      file=stream or sys.stdout, flush=True)
    return CollapseWatch()


def first_steps_callback(records, x, labels, steps=(1,), reference_acc=None, say=print):
    """A Keras callback that appends {step, full_acc, full_nmi, clusters_used} to
    ``records`` after each listed step of a run's first epoch (epoch index 0: a resumed
    run records nothing; with several steps per call, after the first call that reaches
    the step) and prints it next to the pretrained classifier's ACC. Reads predictions
    only: training is unchanged."""
    import keras  # lazy: the report uses collapse, without TF

    from .evaluation import full_pass_scores  # lazy: the report uses collapse, without TF
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
