"""Quirks of the training run itself: Q8 (learning-rate schedules), Q11 (pretraining
fallback, documented) and Q12 (running vs full-pass ACC/NMI)."""
from __future__ import annotations

import numpy as np

from ..metrics import cluster_acc, nmi
from .switches import choices, code_value, keyed


# ---------------------------------------------------------------- Q8
def lr_schedules(base, gamma, step, epochs):
    """Learning rate per 0-based epoch under every lr_schedule setting, the first epoch
    that decays, and how many epochs of the run differ from the code's schedule."""
    from ..optimizers import step_lr  # lazy: the report loads without TF
    n = max(int(epochs), 3 * int(step)) if step <= 100 else int(epochs)
    lrs, errors = {}, {}
    for mode in choices("lr_schedule"):
        try:
            lrs[mode] = [step_lr(base, gamma, step, e, mode) for e in range(n)]
        except ValueError as e:
            errors[mode] = str(e)
    out = {"base": base, "gamma": gamma, "step": step, "epochs": int(epochs),
           "first_decay_epoch": {m: next((e for e, v in enumerate(lr) if v != base), None)
                                 for m, lr in lrs.items()}}
    code = code_value("lr_schedule")
    alts = [m for m in lrs if m != code]
    for alt in alts:
        out[keyed("epochs_differing_within_run", alt, alts)] = int(sum(
            a != b for a, b in zip(lrs[code][:epochs], lrs[alt][:epochs])))
    out.update({f"lr_{m}": lr for m, lr in lrs.items()})
    if errors:
        out["errors"] = errors
    return out


def measure_q8(ctx):
    """Q8: the DGG, classifier and Siamese schedules of the config under every setting."""
    cfg = ctx.config
    return {"configured": cfg.lr_schedule,
            "dgg": lr_schedules(cfg.learning_rate, cfg.lr_gamma, cfg.lr_step, cfg.epochs),
            "classifier": lr_schedules(cfg.classifier_lr, cfg.classifier_lr_gamma,
                                       cfg.classifier_lr_step, cfg.classifier_epochs),
            "siamese": lr_schedules(cfg.siamese_lr, cfg.siamese_lr_gamma, cfg.siamese_lr_step,
                                    cfg.siamese_epochs),
            "note": ("first_decay_epoch is 0-based; null (no decay) means no decay within the listed "
                     "epochs (the classifier's StepLR(700) never fires in 30 epochs)")}


# ---------------------------------------------------------------- Q11
def measure_q11(ctx):
    """Q11: nothing to measure; records where the autoencoder weights came from."""
    return {"weights": ctx.weights_info or {},
            "note": "documented: nothing to measure in the original, which never ran this path"}


# ---------------------------------------------------------------- Q12
def running_vs_full(history):
    """Q12 numbers of one training history: final and mean gaps between the running
    (the original's) and the full-pass ACC/NMI."""
    rows = [r for r in history if r.get("running_acc") is not None and r.get("full_acc") is not None]
    if not rows:
        return {"note": "no labelled epochs"}
    last = rows[-1]
    gap_acc = [r["running_acc"] - r["full_acc"] for r in rows]
    gap_nmi = [r["running_nmi"] - r["full_nmi"] for r in rows]
    out = {"epochs": len(rows),
           "final": {"running_acc": last["running_acc"], "full_acc": last["full_acc"],
                     "running_nmi_max": last["running_nmi"], "full_nmi_max": last["full_nmi"],
                     "full_nmi_arithmetic": last.get("full_nmi_arithmetic")},
           "acc_gap (running - full)": {"final": gap_acc[-1], "mean": float(np.mean(gap_acc)),
                                        "max_abs": float(np.max(np.abs(gap_acc)))},
           "nmi_gap (running - full)": {"final": gap_nmi[-1], "mean": float(np.mean(gap_nmi)),
                                        "max_abs": float(np.max(np.abs(gap_nmi)))}}
    if last.get("full_nmi_arithmetic") is not None:
        out["final_nmi_max_minus_arithmetic"] = last["full_nmi"] - last["full_nmi_arithmetic"]
    return out


def measure_q12(ctx):
    """Q12: a full pass at audit time (NMI 'max' and 'arithmetic') and the history's gaps."""
    from ..evaluation import predict  # lazy: the report loads without TF
    out = {}
    if ctx.labels is not None:
        pred = predict(ctx.net, ctx.x)
        out["full_pass_at_audit"] = {"acc": cluster_acc(ctx.labels, pred),
                                     "nmi_max": nmi(ctx.labels, pred, "max"),
                                     "nmi_arithmetic": nmi(ctx.labels, pred)}
    if ctx.history:
        out["history"] = running_vs_full(ctx.history)
    out["note"] = ("running vs full-pass numbers of finished runs are in the runs part of this "
                   "section when runs are given")
    return out
