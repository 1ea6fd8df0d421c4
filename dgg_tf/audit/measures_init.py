"""Quirks of what happens before DGG training: Q1 (the neighbour table), Q2 (K-means
restarts), Q3 (the GMM-init posterior) and Q5 (classifier pretraining)."""
from __future__ import annotations

import numpy as np

from dgg_tf.core.metrics import cluster_acc, nmi
from dgg_tf.core.tables import neighbor_purity
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.report.switches import alternatives, choices, code_value, keyed
from dgg_tf.stages.initialise import gmm_posterior, pretrain_classifier

#: How the report computes the Q3 posterior of each known setting: with pi_k or not.
_POSTERIOR_WITH_PI = {"no_pi": False, "with_pi": True}


# ---------------------------------------------------------------- Q1
def _purity(ctx, tables, mode):
    """(neighbour purity, where it comes from) of one neighbour-selection mode."""
    if mode in tables:
        return neighbor_purity(tables[mode], ctx.labels, ctx.config.num_neighbors), \
            "measured on the table"
    if ctx.stored_purity and ctx.stored_purity.get(mode) is not None:
        return float(ctx.stored_purity[mode]), "stored in the neighbour-table file"
    return None, "table not available"


def measure_q1(ctx):
    """Q1: label purity of the neighbours under every neighbour-selection mode."""
    cfg = ctx.config
    out = {"configured": cfg.neighbor_selection, "num_neighbors": cfg.num_neighbors}
    if ctx.labels is None:
        out["note"] = "no labels given: neighbour purity needs the true labels"
        return out
    tables = dict(ctx.tables or {})
    tables.setdefault(cfg.neighbor_selection, ctx.table)
    found = {mode: _purity(ctx, tables, mode) for mode in choices("neighbor_selection")}
    out["source"] = {mode: how for mode, (_, how) in found.items()}
    purity = out["purity"] = {mode: p for mode, (p, _) in found.items()}
    code = code_value("neighbor_selection")
    for alt in alternatives("neighbor_selection", code):
        if purity[code] is not None and purity[alt] is not None:
            out[f"purity_change ({alt} - {code})"] = purity[alt] - purity[code]
    return out


# ---------------------------------------------------------------- Q2
def measure_q2(ctx):
    """Q2: inertia, ACC and NMI of K-means with 1, 10 and the configured restarts."""
    out = {"configured": ctx.config.kmeans_n_init}
    for n_init in sorted({1, 10, int(ctx.config.kmeans_n_init)}):
        init = ctx.kmeans(n_init)
        if init is None:
            out.setdefault("errors", {})[str(n_init)] = ctx.kmeans_errors[n_init]
            continue
        centres = init["mean"].T.astype(np.float64)
        inertia = float(np.sum((ctx.x_mean.astype(np.float64) - centres[init["labels"]]) ** 2))
        row = {"inertia": inertia}
        if ctx.labels is not None:
            row["acc"] = cluster_acc(ctx.labels, init["labels"])
            row["nmi"] = nmi(ctx.labels, init["labels"])
        out.setdefault("by_restarts", {})[f"n_init={n_init}"] = row
    one, ten = ctx.kmeans(1), ctx.kmeans(10)
    if one is not None and ten is not None:
        out["label_agreement_1_vs_10"] = cluster_acc(ten["labels"], one["labels"])
        rows = out["by_restarts"]
        if ctx.labels is not None:
            out["acc_change (1 - 10)"] = rows["n_init=1"]["acc"] - rows["n_init=10"]["acc"]
    return out


# ---------------------------------------------------------------- Q3
def measure_q3(ctx):
    """Q3: the GMM-init posterior under every setting (with or without pi_k), compared
    with the code's on the same K-means fit."""
    out = {"configured": ctx.config.gmm_init_posterior}
    init = ctx.kmeans(int(ctx.config.kmeans_n_init))
    if init is None:
        out["note"] = "K-means with the configured restarts failed (see Q2)"
        return out
    pi = init["counts"] / init["counts"].sum()
    post = {v: gmm_posterior(ctx.x_mean, init["mean"], init["std"],
                             pi if _POSTERIOR_WITH_PI[v] else None)
            for v in choices("gmm_init_posterior") if v in _POSTERIOR_WITH_PI}
    preds = {k: np.argmax(v, axis=1) for k, v in post.items()}
    code = code_value("gmm_init_posterior")
    alts = [v for v in post if v != code]
    out.update({"n_init": int(ctx.config.kmeans_n_init), "pi": [float(p) for p in pi]})
    for alt in alts:
        out[keyed("argmax_agreement", alt, alts)] = float(np.mean(preds[code] == preds[alt]))
        out[keyed("mean_abs_posterior_diff", alt, alts)] = float(
            np.mean(np.abs(post[code] - post[alt])))
    out["rows_underflowed_to_zero"] = {k: int(np.sum(v.sum(axis=1) == 0)) for k, v in post.items()}
    not_measured = [v for v in choices("gmm_init_posterior") if v not in post]
    if not_measured:
        out["not_measured"] = not_measured
    if ctx.labels is not None:
        y = ctx.labels
        out["metrics"] = {"kmeans": {"acc": cluster_acc(y, init["labels"]),
                                     "nmi": nmi(y, init["labels"])},
                          **{k: {"acc": cluster_acc(y, p), "nmi": nmi(y, p)}
                             for k, p in preds.items()}}
        for alt in alts:
            out[f"acc_change ({alt} - {code})"] = (out["metrics"][alt]["acc"]
                                                   - out["metrics"][code]["acc"])
    return out


# ---------------------------------------------------------------- Q5
def _classifier_history(ctx, kind, start, config, targets):
    """Per-epoch history of pretraining f2 with loss ``kind`` from weights ``start``:
    the caller's when its length matches, else measured."""
    reused = (ctx.classifier_histories or {}).get(kind)
    if reused is not None and len(reused) == config.classifier_epochs:
        return reused, "reused from the run's pretraining"
    ctx.log(f"classifier pretraining with {kind}, {config.classifier_epochs} epochs")
    set_params(ctx.net, start, partial=True)
    hist = pretrain_classifier(ctx.net, ctx.x_mean, np.asarray(targets),
                               config.replace(classifier_pretrain_loss=kind), ctx.labels,
                               seed=ctx.config.seed, verbose=0)
    return hist, "measured"


def measure_q5(ctx):
    """Q5: f2 pretrained on the K-means labels with every pretraining loss, from the same
    start; f2's weights are restored afterwards."""
    cfg = ctx.config
    epochs = int(cfg.classifier_epochs if ctx.classifier_epochs is None else ctx.classifier_epochs)
    out = {"configured": cfg.classifier_pretrain_loss, "epochs": epochs,
           "reduced_epochs": epochs < cfg.classifier_epochs}
    targets = ctx.kmeans_targets()
    if targets is None:
        out["note"] = "no K-means labels (see Q2): classifier pretraining not measured"
        return out
    saved = {k: v for k, v in get_params(ctx.net).items() if k.startswith("classifier/")}
    start = dict(ctx.classifier_init or saved)
    by_loss, source, agreement = {}, {}, {}
    try:
        for kind in choices("classifier_pretrain_loss"):
            hist, source[kind] = _classifier_history(
                ctx, kind, start, cfg.replace(classifier_epochs=epochs), targets)
            last = hist[-1] if hist else {}
            by_loss[kind] = {"final_loss": last.get("loss"),
                             "agreement_with_kmeans": last.get("agreement_with_kmeans"),
                             "acc": last.get("acc"), "nmi": last.get("nmi")}
            agreement[kind] = [r.get("agreement_with_kmeans") for r in hist]
    finally:
        set_params(ctx.net, saved, partial=True)
    out.update({"by_loss": by_loss, "source": source, "agreement_per_epoch": agreement})
    return out
