"""The discrepancy audit: each quirk Q1..Q12 of ``docs/quirks.md`` measured on the
SAME weights, the SAME batches and the SAME reparameterisation noise for every setting
of its switch (``audit(net, x, table, labels, config)``); ``dgg_tf.report`` renders it.

A switch that changes nothing in a setting (sigma under a similarity that ignores
distances, for example) is reported with exact zeros: the two settings give
bit-identical inputs, so the loss and gradients are the same computation.

Modules: ``context`` (what the measurements share), ``batches`` (the pass over the
audit batches), ``measures_init`` / ``measures_loss`` / ``measures_graph`` /
``measures_run`` (one ``measure_qN(ctx)`` per quirk), ``orchestrator`` (``audit``).
"""
from dgg_tf.audit.context import AuditContext, audit_batches
from dgg_tf.audit.measures_run import running_vs_full
from dgg_tf.audit.orchestrator import audit

__all__ = ["audit", "audit_batches", "AuditContext", "running_vs_full"]
