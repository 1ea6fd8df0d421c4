"""``audit``: every quirk Q1..Q12 measured on a network's current weights, one
measuring function per quirk (``measures_*``) sharing one ``AuditContext``."""
from __future__ import annotations

import time

from dgg_tf.audit.batches import run_on_batches
from dgg_tf.audit.context import AuditContext
from dgg_tf.audit.measures_graph import Q7, measure_q6
from dgg_tf.audit.measures_init import measure_q1, measure_q2, measure_q3, measure_q5
from dgg_tf.audit.measures_loss import Q4, Q9, Q10
from dgg_tf.audit.measures_run import measure_q8, measure_q11, measure_q12
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.files import clean
from dgg_tf.report.quirks import QUIRK_IDS, quirk_text


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
    t_start = time.time()
    ctx = AuditContext(net, x, table, labels, config, n_batches, seed, tables=tables,
                       stored_purity=stored_purity, kmeans_labels=kmeans_labels,
                       classifier_init=classifier_init, classifier_epochs=classifier_epochs,
                       classifier_histories=classifier_histories, weights_info=weights_info,
                       history=history, verbose=verbose)
    measured = {"Q1": measure_q1(ctx), "Q2": measure_q2(ctx), "Q3": measure_q3(ctx),
                "Q5": measure_q5(ctx), "Q8": measure_q8(ctx)}
    # the batch quirks share one pass: the configured loss and gradient once per batch
    measured.update(run_on_batches(ctx, {"Q4": Q4, "Q9": Q9, "Q10": Q10, "Q7": Q7}))
    measured.update({"Q6": measure_q6(ctx), "Q11": measure_q11(ctx), "Q12": measure_q12(ctx)})
    out = {qid: {**quirk_text(qid), **measured[qid]} for qid in QUIRK_IDS}
    out["setup"] = _setup(ctx, t_start)
    return clean(out)


def _setup(ctx, t_start):
    """How the audit was run: sizes, seed, first batch rows, config and time taken."""
    cfg = ctx.config
    return {
        "n_samples": int(len(ctx.x)), "n_batches": len(ctx.batches),
        "n_batches_requested": int(ctx.n_batches), "batch_size": cfg.batch_size,
        "rows_per_batch": cfg.batch_size * (cfg.num_neighbors + 1),
        "seed": int(ctx.seed), "labels": ctx.labels is not None,
        "first_batch_indices": [int(i) for i in ctx.batches[0][0][:10]],
        "config": cfg.to_dict(), "seconds": round(time.time() - t_start, 2),
        "note": ("every setting of a switch is measured on the same weights, the same batches "
                 "(a seeded permutation) and the same noise eps; loss terms are per sample "
                 "(ELBO sums / B), averaged over the batches"),
    }
