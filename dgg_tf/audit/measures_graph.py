"""Quirks of the graph weights: Q6 (Student-t) and Q7 (sigma replaced by batch row 11),
measured on the audit batches under every sigma mode, and Q7's effect on the loss."""
from __future__ import annotations

import numpy as np

from dgg_tf.audit.batches import BatchQuirk, loss_and_flat_gradient
from dgg_tf.audit.measures_loss import change_key, pair_terms
from dgg_tf.numerics.graph import similarity_weights
from dgg_tf.report.stats import agg, cosine, weight_stats
from dgg_tf.report.switches import alternatives, choices, keyed

#: A small fixed batch (12 rows, as sigma_mode 'code' needs) with distinct distances.
_PROBE = np.arange(12 * 3, dtype=np.float32).reshape(12, 3, 1)


def uses_sigma(kind):
    """Whether the weights of similarity ``kind`` depend on sigma: its weights of a fixed
    probe batch with sigma 1 and 2 differ under some sigma mode (computed, not listed,
    so a new similarity is classified too)."""
    for mode in choices("sigma_mode"):
        try:
            one, two = (similarity_weights(_PROBE, s, kind, mode) for s in (1.0, 2.0))
        except ValueError:
            continue
        if not np.array_equal(one, two, equal_nan=True):
            return True
    return False


def sigma_mode_weights(x_list, kind, sigma):
    """{sigma mode: weights of ``kind`` on all batches} (the error message where the
    mode rejects the batch)."""
    out = {}
    for mode in choices("sigma_mode"):
        try:
            out[mode] = np.concatenate([similarity_weights(xb, sigma, kind, mode) for xb in x_list])
        except ValueError as e:
            out[mode] = str(e)
    return out


def _all_identical(ws):
    """Whether at least two sigma modes gave weights and all of those are bit-identical
    (a mode that rejects the batches, e.g. an unknown one, is left out)."""
    arrays = [w for w in ws.values() if not isinstance(w, str)]
    return len(arrays) >= 2 and all(np.array_equal(arrays[0], w, equal_nan=True)
                                    for w in arrays[1:])


def _difference(a, b, a_name, b_name):
    """Whether two weight arrays are identical, their largest difference and the range of
    the neighbour-weight ratio a / b."""
    same = np.array_equal(a, b, equal_nan=True)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = a[:, 1:].astype(np.float64) / b[:, 1:].astype(np.float64)
    finite = ratio[np.isfinite(ratio)]
    return {
        "identical": bool(same),
        "max_abs_diff": 0.0 if same else (float(np.nanmax(diff)) if np.isfinite(diff).any() else None),
        "n_differing": 0 if same else int(np.sum(~((a == b) | (np.isnan(a) & np.isnan(b))))),
        f"max_ratio_{a_name}_over_{b_name}": (1.0 if same else float(finite.max()) if finite.size else None),
        f"min_ratio_{a_name}_over_{b_name}": (1.0 if same else float(finite.min()) if finite.size else None),
    }


def compare_sigma_modes(ws):
    """Stats of each mode's weights, and the code mode against each other mode."""
    res = {"weights": {mode: ({"error": w} if isinstance(w, str) else weight_stats(w))
                       for mode, w in ws.items()}}
    code, *alts = ws
    for alt in alts:
        if isinstance(ws[code], str) or isinstance(ws[alt], str):
            continue
        diff = _difference(ws[code], ws[alt], code, alt)
        res.update({keyed(k, alt, alts): v for k, v in diff.items()})
    return res


# ---------------------------------------------------------------- Q6
def measure_q6(ctx):
    """Q6: the port's Student-t weights (the original crashes) under every sigma mode."""
    x_list = [b[1] for b in ctx.batches]
    ws = sigma_mode_weights(x_list, "student_t", ctx.config.sigma)
    return {"configured_similarity": ctx.config.similarity, "n_batches": len(x_list),
            "by_sigma_mode": compare_sigma_modes(ws)["weights"],
            "note": ("the original raises TypeError here; these are the port's weights "
                     "(rows normalised to 1)")}


# ---------------------------------------------------------------- Q7
def _q7_batch(ctx, bp):
    """The loss under each other sigma mode, on a batch where its weights differ."""
    cfg = ctx.config
    out = {"terms": bp.terms}
    for alt in alternatives("sigma_mode", cfg.sigma_mode):
        try:
            w = similarity_weights(bp.x_nbrs, cfg.sigma, cfg.similarity, alt)
        except ValueError:
            w = None
        out[alt] = None
        if w is not None and not np.array_equal(bp.w, w, equal_nan=True):
            terms, grad = loss_and_flat_gradient(ctx.net, bp.x_nbrs, w, bp.eps,
                                                 cfg.replace(sigma_mode=alt))
            out[alt] = {"terms": terms, "cosine": cosine(bp.grad, grad)}
    return out


def _loss_effect(ctx, alt, records):
    """Terms and gradient cosine of sigma mode ``alt`` against the configured one, over
    the batches where their weights differ (None if there are none)."""
    rows = [(r["terms"], r[alt]) for r in records if r[alt] is not None]
    if not rows:
        return None
    configured = ctx.config.sigma_mode
    table = pair_terms("sigma_mode", configured, [t for t, _ in rows],
                       alt, [a["terms"] for _, a in rows])
    change = table[change_key("sigma_mode", configured, alt)]
    return {"max_abs_term_change": float(max(abs(v) for v in change.values())),
            "terms_per_sample": table, "gradient_cosine": agg([a["cosine"] for _, a in rows])}


def _q7_result(ctx, records):
    cfg = ctx.config
    alts = alternatives("sigma_mode", cfg.sigma_mode)
    x_list = [b[1] for b in ctx.batches]
    out = {"configured": cfg.sigma_mode, "configured_similarity": cfg.similarity,
           "sigma": cfg.sigma, "similarity_uses_sigma": uses_sigma(cfg.similarity),
           "n_batches": len(records)}
    for alt in alts:
        out[keyed("n_batches_with_different_weights", alt, alts)] = sum(
            r[alt] is not None for r in records)
    ws = sigma_mode_weights(x_list, cfg.similarity, cfg.sigma)
    out["configured_weights"] = compare_sigma_modes(ws)
    if _all_identical(ws):
        out["loss_effect"] = {"max_abs_term_change": 0.0,
                              "term_change_per_sample": {k: 0.0 for k in records[0]["terms"]},
                              "gradient_cosine": 1.0}
        out["note"] = (f"similarity '{cfg.similarity}' ignores distances, so sigma changes "
                       "nothing: both modes give bit-identical weights, hence the same loss "
                       "and gradients (exact zeros)")
    else:
        for alt in alts:
            effect = _loss_effect(ctx, alt, records)
            if effect is not None:
                out[keyed("loss_effect", alt, alts)] = effect
    out["by_similarity"] = {kind: compare_sigma_modes(sigma_mode_weights(x_list, kind, cfg.sigma))
                            for kind in choices("similarity") if uses_sigma(kind)}
    return out


Q7 = BatchQuirk(_q7_batch, _q7_result)

