"""What a finished run found, in a few lines: the final and best full-pass ACC and NMI
with their epochs, the accuracy of each stage before DGG (GMM init, pretrained
classifier, after DGG's first step), the clusters in use, and where the files are.
The console prints it at the end of a run; config.json keeps it and report.md opens
with it, so the three agree by construction."""
from __future__ import annotations

import os

from dgg_tf.core.console import number


def _best(history, key):
    rows = [r for r in history if r.get(key) is not None]
    if not rows:
        return None, None
    top = max(rows, key=lambda r: r[key])      # the first epoch that reaches the maximum
    return top[key], top["epoch"]


def run_summary(history, run_info, workdir):
    """The summary dict of a run from its epoch records and config.json record; metrics
    that need labels are None without them."""
    last = history[-1] if history else {}
    best_acc, best_acc_epoch = _best(history, "full_acc")
    best_nmi, best_nmi_epoch = _best(history, "full_nmi")
    first = [s for s in run_info.get("first_steps") or [] if s.get("step") == 1]
    return {
        "epochs": len(history),
        "final_acc": last.get("full_acc"), "final_nmi": last.get("full_nmi"),
        "best_acc": best_acc, "best_acc_epoch": best_acc_epoch,
        "best_nmi": best_nmi, "best_nmi_epoch": best_nmi_epoch,
        "gmm_init_acc": (run_info.get("gmm_init") or {}).get("gmm_no_pi_acc"),
        "classifier_acc": (run_info.get("classifier") or {}).get("acc"),
        "step1_acc": first[0]["full_acc"] if first else None,
        "clusters_used": last.get("clusters_used"),
        "report": os.path.join(workdir, "report.md"),
        "curves": os.path.join(workdir, "curves.png"),
    }



def summary_lines(s):
    """The summary as short lines, for the console and the top of report.md."""
    return [
        f"final (epoch {s['epochs']}): ACC {number(s['final_acc'])}, NMI {number(s['final_nmi'])}; "
        f"best ACC {number(s['best_acc'])} (epoch {s['best_acc_epoch']}), best NMI "
        f"{number(s['best_nmi'])} (epoch {s['best_nmi_epoch']})",
        f"before DGG: GMM init ACC {number(s['gmm_init_acc'])}, pretrained classifier ACC "
        f"{number(s['classifier_acc'])}, after DGG's first step {number(s['step1_acc'])}",
        f"clusters in use at the end: {s['clusters_used'] if s['clusters_used'] is not None else 'n/a'}",
        f"report: {s['report']}; curves: {s['curves']}",
    ]


#: The stages ``stage_scores`` reads from a run record, in pipeline order.
STAGES = ("neighbor_purity", "kmeans_acc", "gmm_init_acc", "classifier_acc", "step1_acc",
          "final_acc")


def stage_scores(run_info):
    """Each stage's accuracy from a run's record (config.json's content): the neighbour
    table's purity, K-means on the encoder means, the initial GMM's posterior as the
    code computes it (Q3, no pi), the pretrained classifier, the full pass after DGG's
    first step, and the final full pass. Empty without labels (none of them can be
    measured); a stage the run did not reach is None."""
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
