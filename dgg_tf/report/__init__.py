"""The discrepancy report: one measured section per quirk Q1..Q12 of
``docs/quirks.md``, and the comparison of finished runs.

``audit(net, x, table, labels, config)`` measures every quirk on the SAME
weights, the SAME batches and the SAME reparameterisation noise for every
setting of its switch; ``write_report(out_dir, audit, runs)`` writes
``report.md`` (human-readable tables) and ``report.json`` (the same numbers
under stable keys: one object per quirk, ``Q1`` ... ``Q12``, each with
``title``, ``switch``, ``code``, ``paper`` and its measurements).

    python -m dgg_tf.report RUN_DIR [RUN_DIR ...] [--out DIR]

compares finished runs of ``reproduce/mnist.py`` (final and best ACC/NMI side
by side, a combined curves plot), reusing each run's stored audit.

A switch that changes nothing in a setting (sigma under a similarity that
ignores distances, for example) is reported with exact zeros: the two settings
give bit-identical inputs, so the loss and gradients are the same computation.

Modules: ``quirks`` (texts and ids), ``switches`` (switch values, from CHOICES),
``context`` (what the measurements share), ``batches`` (the pass over the audit
batches), ``measures_init`` / ``measures_loss`` / ``measures_graph`` /
``measures_run`` (one ``measure_qN(ctx)`` per quirk), ``orchestrator`` (``audit``),
``document`` (report.json), ``markdown`` (report.md), ``findings`` (the
'Findings at a glance' table report.md leads with: one line per quirk),
``compare`` (several runs: differing settings, final metrics side by side,
single-seed / short / unfinished runs), ``runfiles`` (history.csv, curves, reading a run back),
``cli`` (the comparison command, ``python -m dgg_tf.report``; it reads sweeps,
so the package does not import it).
"""
from .orchestrator import audit
from .context import AuditContext, audit_batches
from .document import build_report, summarize_run, write_report
from .markdown import render_markdown
from .measures_run import running_vs_full
from .quirks import QUIRK_IDS, QUIRKS, REPORT_FORMAT, TEXT_KEYS
from .runfiles import load_run, plot_curves, read_history_csv, write_history_csv

__all__ = ["audit", "audit_batches", "AuditContext", "write_report", "build_report",
           "render_markdown", "write_history_csv", "read_history_csv", "plot_curves",
           "load_run", "summarize_run", "running_vs_full", "QUIRKS",
           "QUIRK_IDS", "TEXT_KEYS", "REPORT_FORMAT"]
