"""The discrepancy report: one measured section per quirk Q1..Q12 of the spec
(``../shared/docs/original-dgg.md``), and the comparison of finished runs.

``audit(net, x, table, labels, config)`` measures every quirk on the SAME
weights, the SAME batches and the SAME reparameterisation noise for both
settings of its switch; ``write_report(out_dir, audit, runs)`` writes
``report.md`` (human-readable tables) and ``report.json`` (the same numbers
under stable keys: one object per quirk, ``Q1`` ... ``Q12``, each with
``title``, ``switch``, ``code``, ``paper`` and its measurements).

    python -m dgg_tf.report RUN_DIR [RUN_DIR ...] [--out DIR]

compares finished runs of ``reproduce/mnist.py`` (final and best ACC/NMI side
by side, a combined curves plot), reusing each run's stored audit.

A switch that changes nothing in a setting (sigma under a similarity that
ignores distances, for example) is reported with exact zeros: the two settings
give bit-identical inputs, so the loss and gradients are the same computation.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import math
import os
import sys
import time

import numpy as np

from .config import DGGConfig
from .files import atomic_path, write_bytes_atomic

REPORT_FORMAT = "dgg_tf-report-v1"
QUIRK_IDS = tuple(f"Q{i}" for i in range(1, 13))
TEXT_KEYS = ("title", "switch", "code", "paper")

#: What the code does and what the paper says, per quirk (spec section numbers in brackets).
QUIRKS = {
    "Q1": {
        "title": "Neighbours drawn at random from the top 100",
        "switch": "neighbor_selection: random_top100 (code) / nearest",
        "code": "Siamesev0.py keeps the sample plus 40 columns drawn at random (per row, no "
                "seed) from its 100 nearest in the Siamese embedding; DGG.py trains on the "
                "sample plus the first 20 of those random picks [section 2].",
        "paper": "The graph links each sample to its nearest neighbours in the Siamese "
                 "embedding (Omega_i = the 20 nearest).",
    },
    "Q2": {
        "title": "K-means with 10 restarts (library default changed)",
        "switch": "kmeans_n_init: 10 (code) / 1",
        "code": "K-means (K = 10, random_state 0) with 10 restarts, scikit-learn's default "
                "when the code was written [section 4].",
        "paper": "Not specified; scikit-learn >= 1.4 defaults to a single k-means++ restart, "
                 "so a naive port silently runs 1.",
    },
    "Q3": {
        "title": "GMM-init posterior without mixing weights",
        "switch": "gmm_init_posterior: no_pi (code) / with_pi",
        "code": "The 'GMM ACC' printed at init takes gamma_ik proportional to "
                "prod_d N(x_id | m_dk, s_dk^2) in float32 probability space (+1e-10 in the "
                "denominator), without pi_k [section 4].",
        "paper": "A GMM posterior weighs each component by its mixing weight: gamma_ik "
                 "proportional to pi_k N(x_i | m_k, s_k^2) (pi_k = K-means cluster fractions).",
    },
    "Q4": {
        "title": "Classifier fed x_mean, not the sampled z",
        "switch": "classifier_input: mean (code) / sample",
        "code": "f2 is applied to the encoder mean x_mean everywhere in the MNIST code "
                "[section 5].",
        "paper": "f2 takes the sampled z = mu + exp(logvar / 2) * eps (as the HAR and Reuters "
                 "scripts of the same repository do).",
    },
    "Q5": {
        "title": "Classifier pretraining: cross-entropy over softmax outputs",
        "switch": "classifier_pretrain_loss: double_softmax (code) / cross_entropy",
        "code": "CrossEntropyLoss is applied to the softmax OUTPUT of f2, i.e. a second "
                "log-softmax on top of probabilities [section 5].",
        "paper": "Pretrain f2 on the K-means labels with the plain cross-entropy "
                 "-log p[target] of its probabilities.",
    },
    "Q6": {
        "title": "Student-t similarity crashes",
        "switch": "similarity: student_t implements the evident intent",
        "code": "'Student-t' calls the torch module as a function and raises TypeError; the "
                "evident intent is 1/(1 + dist), self = sum of the neighbours, normalised "
                "[section 6].",
        "paper": "Student-t is one of the graph weights; the port implements the intent as "
                 "1/(1 + dist/sigma) with the configured sigma_mode.",
    },
    "Q7": {
        "title": "sigma replaced by row 11 of the sorted batch distances",
        "switch": "sigma_mode: code / honoured",
        "code": "The sigma argument (10) is ignored: column j is divided by the j-th smallest "
                "distance of batch ROW 11 (the 12th sample); column 0 is 0/0 before being "
                "overwritten; a batch under 12 samples raises IndexError [section 6].",
        "paper": "Distance-based weights use the fixed bandwidth sigma (10): "
                 "exp(-||x_i - x_j||^2 / sigma).",
    },
    "Q8": {
        "title": "StepLR stepped at epoch start (decay one epoch early)",
        "switch": "lr_schedule: code / nominal",
        "code": "scheduler.step() runs at the START of each epoch, so 0-based epoch e runs at "
                "base * gamma ** ((e + 1) // step): the first decay comes one epoch early "
                "[section 7]; the same for the Siamese and classifier schedules.",
        "paper": "StepLR(step, gamma) as named: base * gamma ** (e // step).",
    },
    "Q9": {
        "title": "Prior pc vs the paper's Lagrangian pi",
        "switch": "prior: code / paper",
        "code": "pc_i = sum_{j incl. self} w_ij f2(x_mean_j), NOT normalised, from the "
                "pre-step weights without gradient; log(pc) with no epsilon [section 7].",
        "paper": "pi_ik proportional to sum_{j in Omega_i} w_ij (gamma_ik + gamma_jk), "
                 "normalised over k, gamma from the paper's classifier input, held constant "
                 "[section 8].",
    },
    "Q10": {
        "title": "Coefficient of E[log p(z|c)]: paper 1, code 1/2",
        "switch": "none (documented; the port follows the code)",
        "code": "The gmm term -1/2 sum_d [log(2 pi s^2) + ((mu - m)^2 + exp(logvar)) / s^2] "
                "enters with coefficient 1/2, as in the supplement and VaDE.",
        "paper": "The paper's bound writes coefficient 1 (a typo per the seed write-up), "
                 "i.e. twice the code's gmm term.",
    },
    "Q11": {
        "title": "Pretraining fallback unreachable (NameError)",
        "switch": "none (dgg_tf.pretrain implements section 9)",
        "code": "With use_trainedweight = 0, DGG.py passes an undefined w_init and stops with "
                "NameError: the layer-wise pretraining fallback never ran; every reported "
                "result starts from VaDE's autoencoder weights [section 9].",
        "paper": "Greedy layer-wise autoencoder pretraining then end-to-end fine-tuning; "
                 "reproduce/pretrain_mnist.py implements that recipe.",
    },
    "Q12": {
        "title": "Epoch ACC/NMI from running predictions; NMI 'max' here",
        "switch": "none (training records both running and full-pass)",
        "code": "An epoch's ACC/NMI are computed over the predictions made after each step "
                "(weights from the whole epoch); NMI uses average_method 'max' during "
                "training and 'arithmetic' at init [section 7].",
        "paper": "Clustering accuracy and NMI of the model on all samples (a full pass).",
    },
}


# ============================================================================
# small numeric helpers
# ============================================================================
def _stats(a):
    """min / median / max / mean of the finite values of ``a`` (None when none)."""
    a = np.asarray(a, np.float64).ravel()
    f = a[np.isfinite(a)]
    if f.size == 0:
        return {"min": None, "median": None, "max": None, "mean": None}
    return {"min": float(f.min()), "median": float(np.median(f)), "max": float(f.max()),
            "mean": float(f.mean())}


def _flat(grads):
    return np.concatenate([np.asarray(g, np.float64).ravel() for g in grads])


def _cosine(a, b):
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if not (np.isfinite(na) and np.isfinite(nb)) or na == 0.0 or nb == 0.0:
        return None
    return float(np.dot(a, b) / (na * nb))


def _agg(values):
    """mean / min / max over batches, skipping None."""
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return {"mean": None, "min": None, "max": None}
    return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}


def _nonfinite(w):
    w = np.asarray(w)
    return int(np.isnan(w).sum()), int(np.isinf(w).sum())


# ============================================================================
# the audit
# ============================================================================
def audit_batches(x, table, config: DGGConfig, n_batches=10, seed=0):
    """Deterministic audit batches: ``[(idx, x_nbrs [B, Nn, D], eps [B, Nn, M])]``.

    Rows are a ``seed``-ed permutation of all samples, cut into full batches of
    ``config.batch_size``; the noise is drawn from the same generator. Every
    setting of every switch is measured on these same arrays."""
    rng = np.random.default_rng(seed)
    bsz, nn = config.batch_size, config.num_neighbors + 1
    n_full = len(x) // bsz
    if n_full < 1:
        raise ValueError(f"audit: {len(x)} samples make no full batch of {bsz}")
    order = rng.permutation(len(x))
    out = []
    for b in range(min(int(n_batches), n_full)):
        idx = order[b * bsz:(b + 1) * bsz]
        x_nbrs = np.asarray(x[table[idx, :nn]], np.float32)
        eps = rng.standard_normal((bsz, nn, config.latent_dim), dtype=np.float32)
        out.append((idx, x_nbrs, eps))
    return out


def _gammas(net, x_nbrs, eps):
    """gamma of x_mean and of the sampled z, both [B, Nn, K] (one forward pass)."""
    import tensorflow as tf

    from .objective import from_rows, to_rows
    nn = x_nbrs.shape[1]
    mean, logvar = net.encoder(to_rows(tf.constant(x_nbrs)))
    z = mean + tf.exp(0.5 * logvar) * to_rows(tf.constant(eps))
    g_mean = from_rows(net.classify(mean), nn).numpy().astype(np.float64)
    g_sample = from_rows(net.classify(z), nn).numpy().astype(np.float64)
    return g_mean, g_sample


def _per_sample(terms, loss, bsz):
    out = {k: float(v) / bsz for k, v in terms.items()}
    out["loss"] = float(loss)
    return out


def _lg(net, x_nbrs, w, eps, config):
    from .objective import loss_and_gradients
    terms, loss, grads = loss_and_gradients(net, x_nbrs, w, eps, config)
    return _per_sample(terms, loss, x_nbrs.shape[0]), _flat(grads)


def _lg_q10(net, x_nbrs, w, eps, config):
    """One forward pass: terms, loss and the gradients of the code's loss and of the
    loss with coefficient 1 (the paper's typo) on the gmm term."""
    import tensorflow as tf

    from .objective import forward_terms
    bsz = x_nbrs.shape[0]
    with tf.GradientTape(persistent=True) as tape:
        terms, loss, _ = forward_terms(net, tf.constant(x_nbrs), tf.constant(w),
                                       tf.constant(eps), config)
        loss_one = loss - terms["gmm"] / float(bsz)   # -(sum + one more gmm) / B
    variables = net.trainable_variables
    g_half = _flat(tape.gradient(loss, variables))
    g_one = _flat(tape.gradient(loss_one, variables))
    del tape
    return _per_sample({k: float(v) for k, v in terms.items()}, float(loss), bsz), \
        float(loss_one), g_half, g_one


def _mean_dicts(dicts):
    keys = list(dicts[0])
    return {k: float(np.mean([d[k] for d in dicts])) for k in keys}


def _term_table(a_name, a, b_name, b):
    """{a_name: terms, b_name: terms, 'change': b - a} (per sample, mean over batches)."""
    a, b = _mean_dicts(a), _mean_dicts(b)
    return {a_name: a, b_name: b, f"change ({b_name} - {a_name})": {k: b[k] - a[k] for k in a}}


def _ordered_terms(switch, base_value, base, alt_value, alt):
    """Term table with the settings in CHOICES order (code value first), so the keys do
    not depend on which setting is configured."""
    from .config import CHOICES
    first, second = CHOICES[switch][:2]
    by = {base_value: base, alt_value: alt}
    return _term_table(first, by[first], second, by[second])


def _other(name, value):
    from .config import CHOICES
    allowed = CHOICES[name]
    return allowed[1] if value == allowed[0] else allowed[0]


def _weight_stats(w):
    """Flat summary of weights [rows, Nn] (finite values only; NaN/Inf counted)."""
    n_nan, n_inf = _nonfinite(w)
    rs, sw, nw = _stats(np.sum(w, axis=1)), _stats(w[:, 0]), _stats(w[:, 1:])
    return {"row_sum_min": rs["min"], "row_sum_median": rs["median"], "row_sum_max": rs["max"],
            "row_sum_mean": rs["mean"], "self_weight_mean": sw["mean"],
            "neighbour_weight_min": nw["min"], "neighbour_weight_median": nw["median"],
            "neighbour_weight_max": nw["max"], "n_nan": n_nan, "n_inf": n_inf,
            "finite": bool(n_nan == 0 and n_inf == 0)}


def _sigma_modes(x_list, kind, sigma):
    """Weights of one similarity under sigma_mode code and honoured on the audit batches."""
    from .graph import similarity_weights
    out = {}
    for mode in ("code", "honoured"):
        try:
            out[mode] = np.concatenate([similarity_weights(xb, sigma, kind, mode) for xb in x_list])
        except ValueError as e:
            out[mode] = str(e)
    return out


def _sigma_compare(ws):
    code, hon = ws["code"], ws["honoured"]
    res = {"weights": {mode: ({"error": ws[mode]} if isinstance(ws[mode], str)
                               else _weight_stats(ws[mode])) for mode in ("code", "honoured")}}
    if isinstance(code, str) or isinstance(hon, str):
        return res
    same = np.array_equal(code, hon, equal_nan=True)
    diff = np.abs(code.astype(np.float64) - hon.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = code[:, 1:].astype(np.float64) / hon[:, 1:].astype(np.float64)
    finite = ratio[np.isfinite(ratio)]
    res.update({
        "identical": bool(same),
        "max_abs_diff": 0.0 if same else (float(np.nanmax(diff)) if np.isfinite(diff).any() else None),
        "n_differing": 0 if same else int(np.sum(~((code == hon) | (np.isnan(code) & np.isnan(hon))))),
        "max_ratio_code_over_honoured": (1.0 if same else float(finite.max()) if finite.size else None),
        "min_ratio_code_over_honoured": (1.0 if same else float(finite.min()) if finite.size else None),
    })
    return res


def audit(net, x, table, labels, config: DGGConfig, n_batches=10, seed=0, *, tables=None,
          stored_purity=None, kmeans_labels=None, classifier_init=None, classifier_epochs=None,
          classifier_histories=None, weights_info=None, history=None, verbose=0):
    """Measure every quirk Q1..Q12 on ``net``'s current weights; returns a dict keyed
    ``Q1`` ... ``Q12`` (each: title, switch, code, paper and measurements) plus ``setup``.

    x [N, D] the data, table [N, >= 1 + num_neighbors] the neighbour table in use,
    labels [N] or None (evaluation only). Q4, Q7, Q9 and Q10 use ``n_batches`` full
    batches of ``batch_size`` x (1 + num_neighbors) rows (fewer if N is small) with
    the same noise for both settings. Optional, to reuse what the pipeline already
    computed: ``tables`` {selection mode: table} for Q1 (else only ``table``, as
    ``config.neighbor_selection``; ``stored_purity`` {mode: purity} fills the other
    mode), ``kmeans_labels`` (the GMM init's), ``classifier_init`` (f2's weights
    before pretraining: ``classifier/W``, ``classifier/b``; default f2's current
    weights), ``classifier_epochs`` (Q5's epochs, default config.classifier_epochs;
    fewer is faster and recorded), ``classifier_histories`` {loss kind: history of
    ``pretrain_classifier``} (reused when the epochs match), ``weights_info`` (Q11),
    ``history`` (a trainer history, for Q12). The net's weights are left unchanged.
    """
    from .graph import similarity_weights
    from .metrics import cluster_acc, nmi
    from .optimizers import step_lr
    from .siamese import neighbor_purity
    from .training import TrainingError, encode, gmm_posterior, kmeans_init, predict, pretrain_classifier
    from .weights import get_params, set_params

    t_start = time.time()
    x = np.asarray(x, np.float32)
    table = np.asarray(table)
    cfg = config
    labels = None if labels is None else np.asarray(labels)
    out = {q: dict(QUIRKS[q]) for q in QUIRK_IDS}

    def log(msg):
        if verbose:
            print(f"audit: {msg}", flush=True)

    # ---------------------------------------------------------------- Q1
    q = out["Q1"]
    q["configured"] = cfg.neighbor_selection
    q["num_neighbors"] = cfg.num_neighbors
    all_tables = dict(tables or {})
    all_tables.setdefault(cfg.neighbor_selection, table)
    purity = {}
    if labels is not None:
        for mode in ("random_top100", "nearest"):
            if mode in all_tables:
                purity[mode] = neighbor_purity(all_tables[mode], labels, cfg.num_neighbors)
                q.setdefault("source", {})[mode] = "measured on the table"
            elif stored_purity and stored_purity.get(mode) is not None:
                purity[mode] = float(stored_purity[mode])
                q.setdefault("source", {})[mode] = "stored in the neighbour-table file"
            else:
                purity[mode] = None
                q.setdefault("source", {})[mode] = "table not available"
        q["purity"] = purity
        if purity.get("random_top100") is not None and purity.get("nearest") is not None:
            q["purity_change (nearest - random_top100)"] = purity["nearest"] - purity["random_top100"]
    else:
        q["note"] = "no labels given: neighbour purity needs the true labels"

    # ---------------------------------------------------------------- Q2, Q3
    log("encoder means, K-means")
    x_mean = encode(net, x)
    q2 = out["Q2"]
    q2["configured"] = cfg.kmeans_n_init
    inits = {}
    for n_init in sorted({1, 10, int(cfg.kmeans_n_init)}):
        try:
            init = kmeans_init(x_mean, cfg, n_init=n_init)
        except TrainingError as e:
            inits[n_init] = None
            q2.setdefault("errors", {})[str(n_init)] = str(e)
            continue
        centres = init["mean"].T.astype(np.float64)
        inertia = float(np.sum((x_mean.astype(np.float64) - centres[init["labels"]]) ** 2))
        row = {"inertia": inertia}
        if labels is not None:
            row["acc"] = cluster_acc(labels, init["labels"])
            row["nmi"] = nmi(labels, init["labels"])
        inits[n_init] = init
        q2.setdefault("by_restarts", {})[f"n_init={n_init}"] = row
    if inits.get(1) is not None and inits.get(10) is not None:
        q2["label_agreement_1_vs_10"] = cluster_acc(inits[10]["labels"], inits[1]["labels"])
        rows = q2["by_restarts"]
        if labels is not None:
            q2["acc_change (1 - 10)"] = rows["n_init=1"]["acc"] - rows["n_init=10"]["acc"]

    q3 = out["Q3"]
    q3["configured"] = cfg.gmm_init_posterior
    init = inits.get(int(cfg.kmeans_n_init))
    if kmeans_labels is None and init is not None:
        kmeans_labels = init["labels"]
    if init is not None:
        pi = init["counts"] / init["counts"].sum()
        post = {"no_pi": gmm_posterior(x_mean, init["mean"], init["std"]),
                "with_pi": gmm_posterior(x_mean, init["mean"], init["std"], pi)}
        preds = {k: np.argmax(v, axis=1) for k, v in post.items()}
        q3["n_init"] = int(cfg.kmeans_n_init)
        q3["pi"] = [float(p) for p in pi]
        q3["argmax_agreement"] = float(np.mean(preds["no_pi"] == preds["with_pi"]))
        q3["mean_abs_posterior_diff"] = float(np.mean(np.abs(post["no_pi"] - post["with_pi"])))
        q3["rows_underflowed_to_zero"] = {k: int(np.sum(v.sum(axis=1) == 0)) for k, v in post.items()}
        if labels is not None:
            q3["metrics"] = {
                "kmeans": {"acc": cluster_acc(labels, init["labels"]), "nmi": nmi(labels, init["labels"])},
                **{k: {"acc": cluster_acc(labels, p), "nmi": nmi(labels, p)} for k, p in preds.items()}}
            q3["acc_change (with_pi - no_pi)"] = q3["metrics"]["with_pi"]["acc"] - q3["metrics"]["no_pi"]["acc"]
    else:
        q3["note"] = "K-means with the configured restarts failed (see Q2)"

    # ---------------------------------------------------------------- Q5
    q5 = out["Q5"]
    q5["configured"] = cfg.classifier_pretrain_loss
    epochs5 = int(cfg.classifier_epochs if classifier_epochs is None else classifier_epochs)
    q5["epochs"] = epochs5
    q5["reduced_epochs"] = epochs5 < cfg.classifier_epochs
    if kmeans_labels is None:
        q5["note"] = "no K-means labels (see Q2): classifier pretraining not measured"
    else:
        saved = {k: v for k, v in get_params(net).items() if k.startswith("classifier/")}
        start = dict(classifier_init or saved)
        cfg5 = cfg.replace(classifier_epochs=epochs5)
        for kind in ("double_softmax", "cross_entropy"):
            reused = (classifier_histories or {}).get(kind)
            if reused is not None and len(reused) == epochs5:
                hist, how = reused, "reused from the run's pretraining"
            else:
                log(f"classifier pretraining with {kind}, {epochs5} epochs")
                set_params(net, start, partial=True)
                hist = pretrain_classifier(net, x_mean, np.asarray(kmeans_labels),
                                           cfg5.replace(classifier_pretrain_loss=kind),
                                           labels, seed=cfg.seed, verbose=0)
                how = "measured"
            last = hist[-1] if hist else {}
            q5.setdefault("by_loss", {})[kind] = {
                "final_loss": last.get("loss"), "agreement_with_kmeans": last.get("agreement_with_kmeans"),
                "acc": last.get("acc"), "nmi": last.get("nmi")}
            q5.setdefault("source", {})[kind] = how
            q5.setdefault("agreement_per_epoch", {})[kind] = [r.get("agreement_with_kmeans") for r in hist]
        set_params(net, saved, partial=True)

    # ---------------------------------------------------------------- Q8
    q8 = out["Q8"]
    q8["configured"] = cfg.lr_schedule

    def schedule(base, gamma, step, epochs):
        n = max(int(epochs), 3 * int(step)) if step <= 100 else int(epochs)
        code = [step_lr(base, gamma, step, e, "code") for e in range(n)]
        nominal = [step_lr(base, gamma, step, e, "nominal") for e in range(n)]
        first = {m: next((e for e, v in enumerate(lr) if v != base), None)
                 for m, lr in (("code", code), ("nominal", nominal))}
        return {"base": base, "gamma": gamma, "step": step, "epochs": int(epochs),
                "first_decay_epoch": first,
                "epochs_differing_within_run": int(sum(a != b for a, b in zip(code[:epochs], nominal[:epochs]))),
                "lr_code": code, "lr_nominal": nominal}
    q8["dgg"] = schedule(cfg.learning_rate, cfg.lr_gamma, cfg.lr_step, cfg.epochs)
    q8["classifier"] = schedule(cfg.classifier_lr, cfg.classifier_lr_gamma, cfg.classifier_lr_step,
                                cfg.classifier_epochs)
    q8["siamese"] = schedule(cfg.siamese_lr, cfg.siamese_lr_gamma, cfg.siamese_lr_step, cfg.siamese_epochs)
    q8["note"] = ("first_decay_epoch is 0-based; n/a means no decay within the listed "
                  "epochs (the classifier's StepLR(700) never fires in 30 epochs)")

    # ---------------------------------------------------------------- batch quirks
    log("batches")
    batches = audit_batches(x, table, cfg, n_batches, seed)
    nb = len(batches)
    in4, pr9 = _other("classifier_input", cfg.classifier_input), _other("prior", cfg.prior)
    cfg4 = cfg.replace(classifier_input=in4)
    cfg9 = cfg.replace(prior=pr9)
    sm7 = _other("sigma_mode", cfg.sigma_mode)
    cfg7 = cfg.replace(sigma_mode=sm7)
    acc = {k: [] for k in ("base", "q4", "q9", "q7", "cos4", "cos9", "cos7", "q10_one", "cos10",
                           "gdiff", "gmax", "agree", "pidiff", "pidiff_same", "pidiff_trained",
                           "rowsum", "gmm_share")}
    x_list = [b[1] for b in batches]
    for bi, (idx, x_nbrs, eps) in enumerate(batches):
        log(f"batch {bi + 1}/{nb}")
        w = similarity_weights(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode)
        base, loss_one, g_base, g_one = _lg_q10(net, x_nbrs, w, eps, cfg)
        acc["base"].append(base)
        acc["q10_one"].append(loss_one)
        acc["cos10"].append(_cosine(g_base, g_one))
        total = sum(abs(base[k]) for k in base if k != "loss")
        acc["gmm_share"].append(abs(base["gmm"]) / total if total else None)
        # Q4
        t4, g4 = _lg(net, x_nbrs, w, eps, cfg4)
        acc["q4"].append(t4)
        acc["cos4"].append(_cosine(g_base, g4))
        g_mean, g_sample = _gammas(net, x_nbrs, eps)
        d = np.abs(g_mean - g_sample)
        acc["gdiff"].append(float(d.mean()))
        acc["gmax"].append(float(d.max()))
        acc["agree"].append(float(np.mean(np.argmax(g_mean, -1) == np.argmax(g_sample, -1))))
        # Q9
        t9, g9 = _lg(net, x_nbrs, w, eps, cfg9)
        acc["q9"].append(t9)
        acc["cos9"].append(_cosine(g_base, g9))
        from .objective import prior as prior_np
        g_cfg = g_mean if cfg.classifier_input == "mean" else g_sample
        pc = prior_np(g_mean, w, "code")
        rowsum = pc.sum(axis=1)
        acc["rowsum"].append(rowsum)
        pc_norm = pc / rowsum[:, None]
        acc["pidiff_trained"].append(float(np.max(np.abs(pc_norm - prior_np(g_cfg, w, "paper")))))
        acc["pidiff_same"].append(float(np.max(np.abs(pc_norm - prior_np(g_mean, w, "paper")))))
        # Q7: the configured similarity under the other sigma mode
        try:
            w7 = similarity_weights(x_nbrs, cfg.sigma, cfg.similarity, sm7)
        except ValueError:
            w7 = None
        if w7 is not None and not np.array_equal(w, w7, equal_nan=True):
            t7, g7 = _lg(net, x_nbrs, w7, eps, cfg7)
            acc["q7"].append((base, t7))
            acc["cos7"].append(_cosine(g_base, g7))
        del g_base, g_one, g4, g9

    # Q4
    q4 = out["Q4"]
    q4.update({"configured": cfg.classifier_input, "n_batches": nb,
               "mean_abs_gamma_diff": float(np.mean(acc["gdiff"])),
               "max_abs_gamma_diff": float(np.max(acc["gmax"])),
               "argmax_agreement": float(np.mean(acc["agree"])),
               "terms_per_sample": _ordered_terms("classifier_input", cfg.classifier_input, acc["base"],
                                                 in4, acc["q4"]),
               "gradient_cosine": _agg(acc["cos4"])})
    # Q9
    q9 = out["Q9"]
    rowsum = np.concatenate(acc["rowsum"])
    q9.update({"configured": cfg.prior, "n_batches": nb,
               "max_abs_pi_diff": float(np.max(acc["pidiff_trained"])),
               "max_abs_pi_diff_same_gamma": float(np.max(acc["pidiff_same"])),
               "pc_row_sum": {**_stats(rowsum), "std": float(np.std(rowsum))},
               "terms_per_sample": _ordered_terms("prior", cfg.prior, acc["base"], pr9, acc["q9"]),
               "gradient_cosine": _agg(acc["cos9"]),
               "note": ("max_abs_pi_diff compares pc/sum(pc) (from f2(x_mean)) with the paper's pi "
                        f"from f2 of the configured input ({cfg.classifier_input}), as training "
                        "does; max_abs_pi_diff_same_gamma feeds both formulas f2(x_mean), "
                        "isolating the formula (equal up to rounding when the self weight is "
                        "the sum of the neighbour weights: no_inform, gauss)")})
    # Q10
    q10 = out["Q10"]
    gmm_half = float(np.mean([b["gmm"] for b in acc["base"]]))
    loss_half = float(np.mean([b["loss"] for b in acc["base"]]))
    q10.update({"n_batches": nb,
                "gmm_term_per_sample": {"code (1/2)": gmm_half, "paper typo (1)": 2.0 * gmm_half},
                "loss": {"code (1/2)": loss_half, "paper typo (1)": float(np.mean(acc["q10_one"]))},
                "gmm_share_of_terms": _agg(acc["gmm_share"]),
                "gradient_cosine": _agg(acc["cos10"]),
                "note": "both from the same forward pass; the paper-typo term is exactly twice "
                        "the code's gmm term (its -1/2 becomes -1)"})
    # Q7
    q7 = out["Q7"]
    uses_sigma = cfg.similarity in ("gauss", "inv_gauss", "student_t")
    q7.update({"configured": cfg.sigma_mode, "configured_similarity": cfg.similarity,
               "sigma": cfg.sigma, "similarity_uses_sigma": uses_sigma, "n_batches": nb,
               "n_batches_with_different_weights": len(acc["q7"])})
    q7["configured_weights"] = _sigma_compare(_sigma_modes(x_list, cfg.similarity, cfg.sigma))
    cw = q7["configured_weights"]
    if cw.get("identical"):
        zero = {k: 0.0 for k in acc["base"][0]}
        q7["loss_effect"] = {"max_abs_term_change": 0.0, "term_change_per_sample": zero,
                             "gradient_cosine": 1.0}
        q7["note"] = (f"similarity '{cfg.similarity}' ignores distances, so sigma changes nothing: "
                      "both modes give bit-identical weights, hence the same loss and gradients "
                      "(exact zeros)")
    elif acc["q7"]:
        tt = _ordered_terms("sigma_mode", cfg.sigma_mode, [a for a, _ in acc["q7"]],
                            sm7, [b for _, b in acc["q7"]])
        change = tt["change (honoured - code)"]
        q7["loss_effect"] = {"max_abs_term_change": float(max(abs(v) for v in change.values())),
                             "terms_per_sample": tt, "gradient_cosine": _agg(acc["cos7"])}
    q7["by_similarity"] = {kind: _sigma_compare(_sigma_modes(x_list, kind, cfg.sigma))
                           for kind in ("gauss", "inv_gauss", "student_t")}
    # Q6
    q6 = out["Q6"]
    q6["configured_similarity"] = cfg.similarity
    q6["n_batches"] = nb
    for mode in ("code", "honoured"):
        try:
            w6 = np.concatenate([similarity_weights(xb, cfg.sigma, "student_t", mode) for xb in x_list])
        except ValueError as e:
            q6.setdefault("by_sigma_mode", {})[mode] = {"error": str(e)}
            continue
        q6.setdefault("by_sigma_mode", {})[mode] = _weight_stats(w6)
    q6["note"] = ("the original raises TypeError here; these are the port's weights "
                  "(rows normalised to 1)")

    # ---------------------------------------------------------------- Q11
    q11 = out["Q11"]
    q11["weights"] = weights_info or {}
    q11["note"] = "documented: nothing to measure in the original, which never ran this path"

    # ---------------------------------------------------------------- Q12
    q12 = out["Q12"]
    if labels is not None:
        pred = predict(net, x)
        q12["full_pass_at_audit"] = {"acc": cluster_acc(labels, pred), "nmi_max": nmi(labels, pred, "max"),
                                "nmi_arithmetic": nmi(labels, pred)}
    if history:
        q12["history"] = running_vs_full(history)
    q12["note"] = ("running vs full-pass numbers of finished runs are in the runs part of this "
                   "section when runs are given")

    out["setup"] = {
        "n_samples": int(len(x)), "n_batches": nb, "n_batches_requested": int(n_batches),
        "batch_size": cfg.batch_size, "rows_per_batch": cfg.batch_size * (cfg.num_neighbors + 1),
        "seed": int(seed), "labels": labels is not None,
        "first_batch_indices": [int(i) for i in batches[0][0][:10]],
        "config": cfg.to_dict(), "seconds": round(time.time() - t_start, 2),
        "note": ("every setting of a switch is measured on the same weights, the same batches "
                 "(a seeded permutation) and the same noise eps; loss terms are per sample "
                 "(ELBO sums / B), averaged over the batches"),
    }
    return clean(out)


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


# ============================================================================
# runs: summaries, history files, curves
# ============================================================================
def summarize_run(run):
    """Final and best full-pass / running ACC and NMI of a run dict (name, history, ...)."""
    hist = run.get("history") or []
    out = {"name": run.get("name"), "variant": run.get("variant"), "epochs": len(hist),
           "seconds": float(sum(r.get("seconds", 0.0) or 0.0 for r in hist))}
    if not hist:
        return out
    last = hist[-1]
    out["final"] = {k: last.get(k) for k in ("full_acc", "full_nmi", "running_acc", "running_nmi",
                                             "loss")}
    best = {}
    for key in ("full_acc", "full_nmi", "running_acc", "running_nmi"):
        vals = [(r[key], r["epoch"]) for r in hist if r.get(key) is not None]
        if vals:
            v, e = max(vals, key=lambda t: (t[0], -t[1]))
            best[key] = {"value": v, "epoch": e}
    out["best"] = best
    return out


def write_history_csv(path, history):
    """history.csv: one row per epoch, every key of the records (floats round-trip exactly)."""
    keys = []
    for r in history:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(keys)
    for r in history:
        wr.writerow(["" if r.get(k) is None else repr(r[k]) if isinstance(r[k], float) else r[k]
                     for k in keys])
    _atomic_write(path, buf.getvalue())


def read_history_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        rec = {}
        for k, v in r.items():
            if v == "":
                rec[k] = None
                continue
            try:
                rec[k] = int(v)
            except ValueError:
                try:
                    rec[k] = float(v)
                except ValueError:
                    rec[k] = v
        out.append(rec)
    return out


def plot_curves(path, runs):
    """ACC and NMI against epoch (full pass solid, running dashed) for one or more runs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("acc", "nmi")):
        for i, run in enumerate(runs):
            hist = run.get("history") or []
            color = f"C{i}"
            for kind, style in (("full", "-"), ("running", "--")):
                pts = [(r["epoch"], r[f"{kind}_{metric}"]) for r in hist
                       if r.get(f"{kind}_{metric}") is not None]
                if pts:
                    e, v = zip(*pts)
                    ax.plot(e, v, style, color=color, marker="o" if len(pts) < 20 else None,
                            markersize=3, label=f"{run.get('name', 'run')} {kind}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.upper() + (" (NMI 'max')" if metric == "nmi" else ""))
        ax.set_title(f"{metric.upper()}: full pass (solid), running (dashed)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def load_run(run_dir):
    """A finished (or running) run directory of reproduce/mnist.py as a run dict."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise ValueError(f"run directory {run_dir} does not exist")
    hist_path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(hist_path):
        raise ValueError(f"{run_dir} holds no history.csv (not a training run of reproduce/mnist.py)")
    run = {"name": os.path.basename(os.path.normpath(run_dir)), "dir": run_dir,
           "history": read_history_csv(hist_path)}
    cfg_path = os.path.join(run_dir, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            meta = json.load(f)
        run["variant"] = meta.get("variant")
        run["config"] = meta.get("config")
    rep_path = os.path.join(run_dir, "report.json")
    if os.path.exists(rep_path):
        with open(rep_path) as f:
            rep = json.load(f)
        run["audit"] = {k: v for k, v in rep.items() if k in QUIRK_IDS or k == "setup"}
    return run


# ============================================================================
# writing report.md / report.json
# ============================================================================
def clean(obj):
    """JSON-ready copy: NumPy scalars/arrays to Python, NaN to None, +-Inf to strings."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return obj


def _fmt(v):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.6g}"
    if isinstance(v, list):
        if len(v) <= 10 and all(not isinstance(a, (dict, list)) for a in v):
            return ", ".join(_fmt(a) for a in v)
        return (", ".join(_fmt(a) for a in v[:4]) + f", ... ({len(v)} values; full list in "
                "report.json)")
    return str(v).replace("|", "\\|").replace("\n", " ")


def _is_scalar(v):
    return not isinstance(v, (dict, list)) or (isinstance(v, list) and all(
        not isinstance(a, (dict, list)) for a in v))


def _is_flat(v):
    return isinstance(v, dict) and bool(v) and all(_is_scalar(a) for a in v.values())


def _table(lines, columns):
    """One table: a column per key of ``columns`` (each a flat dict), a row per inner key."""
    cols = list(columns)
    rows = []
    for v in columns.values():
        rows += [r for r in v if r not in rows]
    lines += ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(_fmt(columns[c].get(r)) for c in cols) + " |")
    lines.append("")


def _render(lines, data, depth=0):
    """Generic renderer: scalars as a quantity/value table; flat dicts side by side in
    one table; a dict of flat dicts as its own table; deeper dicts as labelled blocks."""
    scalars = {k: v for k, v in data.items() if _is_scalar(v) and k != "note"}
    flats = {k: v for k, v in data.items() if _is_flat(v)}
    if scalars:
        lines += ["| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in scalars.items()]
        lines.append("")
    if flats:
        _table(lines, flats)
    for key, value in data.items():
        if key in scalars or key in flats or key == "note" or not isinstance(value, dict):
            continue
        if value and all(_is_flat(v) for v in value.values()):
            lines += [f"*{key}*", ""]
            _table(lines, value)
        elif value:
            lines += [f"**{key}**" if depth == 0 else f"*{key}*", ""]
            _render(lines, value, depth + 1)
    if isinstance(data.get("note"), str):
        lines += [f"Note: {data['note']}", ""]


def _render_q8_table(lines, q8):
    dgg = q8.get("dgg") if isinstance(q8, dict) else None
    if not dgg or "lr_code" not in dgg:
        return
    n = min(len(dgg["lr_code"]), 31)
    lines += [f"DGG learning rate per epoch (0-based), first {n} epochs:", "",
              "| epoch | code | nominal |", "|---|---|---|"]
    for e in range(n):
        c, m = dgg["lr_code"][e], dgg["lr_nominal"][e]
        mark = " **differs**" if c != m else ""
        lines.append(f"| {e} | {_fmt(c)} | {_fmt(m)}{mark} |")
    lines.append("")


def _measured(q):
    return {k: v for k, v in q.items() if k not in TEXT_KEYS}


def build_report(audit_dict=None, runs=None):
    """The report.json object: Q1..Q12 (text + measurements), setup, runs."""
    runs = list(runs or [])
    rep = {"format": REPORT_FORMAT,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    by_run = audit_dict is None and any(r.get("audit") for r in runs)
    for qid in QUIRK_IDS:
        entry = dict(QUIRKS[qid])
        if audit_dict is not None and qid in audit_dict:
            entry.update(_measured(audit_dict[qid]))
        elif by_run:
            entry["runs"] = {r["name"]: _measured(r["audit"][qid])
                             for r in runs if r.get("audit") and qid in r["audit"]}
        rep[qid] = entry
    if runs:
        hist_q12 = {r["name"]: running_vs_full(r["history"]) for r in runs if r.get("history")}
        if hist_q12:
            rep["Q12"]["running_vs_full_by_run"] = hist_q12
        rep["runs"] = [summarize_run(r) for r in runs]
    if audit_dict is not None and "setup" in audit_dict:
        rep["setup"] = audit_dict["setup"]
    elif by_run:
        rep["setup"] = {r["name"]: r["audit"].get("setup") for r in runs if r.get("audit")}
    return clean(rep)


def render_markdown(rep):
    lines = ["# DGG discrepancy report", "",
             "One section per quirk of `../shared/docs/original-dgg.md` (Q1..Q12): what the "
             "original code does, what the paper says, and measurements of both settings on "
             "the same weights, batches and noise. Numbers are also in `report.json` under the "
             "same keys.", ""]
    runs = rep.get("runs") or []
    if runs:
        lines += ["## Runs", "",
                  "| run | variant | epochs | final ACC | final NMI | best ACC (epoch) | "
                  "best NMI (epoch) | final running ACC | final running NMI | train s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            fin, best = r.get("final") or {}, r.get("best") or {}

            def b(key):
                v = best.get(key)
                return f"{_fmt(v['value'])} ({v['epoch']})" if v else "n/a"
            lines.append(f"| {r['name']} | {r.get('variant') or 'n/a'} | {r['epochs']} | "
                         f"{_fmt(fin.get('full_acc'))} | {_fmt(fin.get('full_nmi'))} | "
                         f"{b('full_acc')} | {b('full_nmi')} | {_fmt(fin.get('running_acc'))} | "
                         f"{_fmt(fin.get('running_nmi'))} | {_fmt(r.get('seconds'))} |")
        lines += ["", "ACC/NMI: full pass over all samples after the epoch (NMI 'max' as the "
                  "original prints); running = the original's per-step predictions (Q12). "
                  "Curves: `curves.png`.", ""]
    setup = rep.get("setup")
    if setup:
        lines += ["## Audit setup", ""]
        if "n_batches" in setup:
            s = {k: v for k, v in setup.items() if k != "config"}
            _render(lines, s)
        else:
            for name, s in setup.items():
                if s:
                    lines += [f"*{name}*", ""]
                    _render(lines, {k: v for k, v in s.items() if k != "config"})
    for qid in QUIRK_IDS:
        q = rep.get(qid, QUIRKS[qid])
        lines += [f"## {qid}: {q['title']}", "",
                  f"- Switch: {q['switch']}", f"- Code: {q['code']}", f"- Paper: {q['paper']}", ""]
        measured = _measured(q)
        if "runs" in measured and isinstance(measured["runs"], dict):
            for name, m in measured.pop("runs").items():
                lines += [f"### {qid} in run {name}", ""]
                _render(lines, m)
                if qid == "Q8":
                    _render_q8_table(lines, m)
        if measured:
            _render(lines, measured)
            if qid == "Q8":
                _render_q8_table(lines, measured)
    return "\n".join(lines).rstrip() + "\n"


def write_report(out_dir, audit_dict=None, runs=None):
    """Write ``report.md`` and ``report.json`` into ``out_dir`` (atomically); returns the
    report object. ``audit_dict``: one audit (``audit``'s result) or None; ``runs``:
    run dicts (name, variant, history and optionally their own ``audit``) for the run
    comparison and Q12, and, without ``audit_dict``, per-run measurements."""
    os.makedirs(out_dir, exist_ok=True)
    rep = build_report(audit_dict, runs)
    _atomic_write(os.path.join(out_dir, "report.json"),
                  json.dumps(rep, indent=1, allow_nan=False) + "\n")
    _atomic_write(os.path.join(out_dir, "report.md"), render_markdown(rep))
    return rep


def _atomic_write(path, text):
    write_bytes_atomic(path, lambda f: f.write(text), mode="w")


# ============================================================================
# command line: compare finished runs
# ============================================================================
def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m dgg_tf.report",
        description="Compare finished runs of reproduce/mnist.py: final and best ACC/NMI side "
                    "by side, combined curves, and each run's stored discrepancy audit.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default=None,
                   help="output directory (default runs/compare-<timestamp>)")
    args = p.parse_args(argv)
    try:
        runs = [load_run(d) for d in args.runs]
        names = [r["name"] for r in runs]
        if len(set(names)) != len(names):
            for i, r in enumerate(runs):
                r["name"] = f"{i + 1}:{r['name']}"
        out = args.out or os.path.join(
            "runs", "compare-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        write_report(out, None, runs)
        plot_curves(os.path.join(out, "curves.png"), runs)
    except (ValueError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in runs:
        s = summarize_run(r)
        fin = s.get("final") or {}
        print(f"{s['name']}: {s['epochs']} epochs, final ACC={_fmt(fin.get('full_acc'))} "
              f"NMI={_fmt(fin.get('full_nmi'))}")
    print(f"wrote {os.path.join(out, 'report.md')}, report.json, curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
