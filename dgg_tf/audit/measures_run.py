"""Quirks of the training run itself: Q8 (learning-rate schedules), Q11 (pretraining
fallback, documented) and Q12 (running vs full-pass ACC/NMI)."""
from __future__ import annotations

from dgg_tf.core.metrics import cluster_acc, nmi
from dgg_tf.numerics.evaluation import predict
from dgg_tf.numerics.optimizers import step_lr
from dgg_tf.report.document import running_vs_full
from dgg_tf.report.switches import choices, code_value, keyed


# ---------------------------------------------------------------- Q8
def lr_schedules(base, gamma, step, epochs):
    """Learning rate per 0-based epoch under every lr_schedule setting, the first epoch
    that decays, and how many epochs of the run differ from the code's schedule."""
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
def measure_q12(ctx):
    """Q12: a full pass at audit time (NMI 'max' and 'arithmetic') and the history's gaps."""
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
