"""Per-epoch curves across a sweep: every cell's full-pass ACC after each epoch (read
from its history.csv, so a cell still running shows its epochs so far), the GMM init's
and the pretrained classifier's ACC as reference lines, and how flat each
configuration is at the end (the ACC slope over its last epochs), which says whether a
protocol ran long enough."""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from dgg_tf.core.checkpoints import CheckpointFormatError
from dgg_tf.core.rundir import RunDir
from dgg_tf.report.runfiles import save_figure
from dgg_tf.sweep.cells import cell_dir

#: Epochs over which the end-of-run slope is fitted.
SLOPE_EPOCHS = 20


def cell_curve(run_dir):
    """[full-pass ACC after epoch 1, 2, ...] of one run directory ([] if none yet)."""
    return [float(r["full_acc"]) for r in RunDir(run_dir).read_history() or []
            if r.get("full_acc") is not None]


def gmm_init_acc(run_dir):
    """The GMM init's ACC (code posterior, Q3) of a run: from its record (config.json),
    else from the checkpoint's record of the stages (runs made before config.json held
    it)."""
    run = RunDir(run_dir)
    record = run.read_record()
    if record is not None and record.gmm_init_acc is not None:
        return record.gmm_init_acc
    try:
        checkpoint = run.checkpoint_record()
    except CheckpointFormatError as e:      # an older run's: its record, read-only
        stages = e.record or {}
    else:
        if checkpoint is None:
            return None
        stages = checkpoint["state"]
    return (stages.get("init") or {}).get("gmm_no_pi_acc")


def end_slope(curves, epochs=SLOPE_EPOCHS):
    """ACC change per 10 epochs over the last ``epochs`` epochs of the seeds' mean curve
    (a least-squares line), over the seeds that ran that far; None if too short."""
    full = [c for c in curves if len(c) >= epochs]
    if not full:
        return None
    n = min(len(c) for c in full)
    mean = np.mean([c[n - epochs:n] for c in full], axis=0)
    return float(np.polyfit(np.arange(epochs), mean, 1)[0] * 10)


def collect_curves(sweep_dir, plan):
    """{configuration: {"curves": {seed: [ACC per epoch]}, "gmm_acc": [per seed],
    "slope_last_20": ACC per 10 epochs}} of a sweep."""
    out = {}
    for name, c in plan["configs"].items():
        dirs = {s: cell_dir(sweep_dir, name, s) for s in c["seeds"]}
        curves = {str(s): cell_curve(d) for s, d in dirs.items()}
        out[name] = {"curves": curves,
                     "gmm_acc": [gmm_init_acc(d) if os.path.isdir(d) else None
                                 for d in dirs.values()],
                     f"slope_last_{SLOPE_EPOCHS}": end_slope(list(curves.values()))}
    return out


def plot_curves(path, sweep, title=""):
    """Full-pass ACC against epoch for every cell, one colour per configuration, with
    the mean pretrained-classifier ACC (dashed) and GMM init ACC (dotted) of the sweep."""

    fig = Figure(figsize=(10, 6))
    ax = fig.subplots()
    for i, (name, entry) in enumerate(sweep["configs"].items()):
        for j, curve in enumerate((entry.get("curves") or {}).values()):
            if curve:
                ax.plot(np.arange(1, len(curve) + 1), curve, color=f"C{i % 10}", lw=1,
                        alpha=0.8, label=name if j == 0 else None)
    refs = [("classifier_acc", "--", "pretrained classifier (mean)"),
            ("gmm_acc", ":", "GMM init (mean)")]
    for key, style, label in refs:
        values = [v for e in sweep["configs"].values() for v in (e.get(key) or [])
                  if v is not None]
        if values:
            ax.axhline(float(np.mean(values)), color="k", ls=style, lw=1, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ACC (full pass)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=8)
    save_figure(fig, path)
