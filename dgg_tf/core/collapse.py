"""Collapse rules: a DGG epoch whose full-pass predictions use fewer than half the
clusters, or whose full-pass ACC is below half the pretrained classifier's, counts as a
collapse. The epoch's record keeps ``clusters_used`` and ``collapse`` (0/1); the run's
report lists those epochs (``stages.watch`` flags them during training). No TensorFlow."""
from __future__ import annotations


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
                  "(docs/results.md)")
