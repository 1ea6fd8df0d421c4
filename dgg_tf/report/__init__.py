"""The discrepancy report, as documents: one section per quirk Q1..Q12 of
``docs/quirks.md`` and the comparison of finished runs. No TensorFlow: it renders what
``dgg_tf.audit`` measured and what runs recorded.

``write_report(out_dir, audit, runs)`` writes ``report.md`` (human-readable tables) and
``report.json`` (the same numbers under stable keys: one object per quirk, ``Q1`` ...
``Q12``, each with ``title``, ``switch``, ``code``, ``paper`` and its measurements).

    python -m dgg_tf.report RUN_DIR [RUN_DIR ...] [--out DIR]

compares finished runs of ``reproduce/mnist.py`` (final and best ACC/NMI side by side,
a combined curves plot), reusing each run's stored audit (``dgg_tf.cli.report``).

Modules: ``quirks`` (texts and ids), ``switches`` (switch values, from CHOICES),
``document`` (report.json), ``markdown`` (report.md), ``findings`` (the 'Findings at a
glance' table report.md leads with: one line per quirk), ``compare`` (several runs:
differing settings, final metrics side by side, single-seed / short / unfinished runs),
``runfiles`` (curves, reading a run back), ``stats`` and ``effects``. A run's files
themselves (history.csv, config.json, ...) are ``core.rundir.RunDir``'s;
``write_history_csv``/``read_history_csv`` (``core.history``) are re-exported here for
callers of the earlier layout.
"""
from dgg_tf.core.history import read_history_csv, write_history_csv
from dgg_tf.report.document import build_report, summarize_run, write_report
from dgg_tf.report.markdown import render_markdown
from dgg_tf.report.quirks import QUIRK_IDS, QUIRKS, REPORT_FORMAT, TEXT_KEYS
from dgg_tf.report.runfiles import load_run, plot_curves, steps_per_epoch

__all__ = ["write_report", "build_report", "render_markdown", "write_history_csv",
           "read_history_csv", "plot_curves", "load_run", "steps_per_epoch", "summarize_run",
           "QUIRKS", "QUIRK_IDS", "TEXT_KEYS", "REPORT_FORMAT"]
