"""Writing what a sweep found: sweep.json (``results.collect``), sweep.md (per
configuration mean +- sd, min, max; each configuration's paired difference to its
baseline with a 95% bootstrap interval; a ranked summary; how flat the curves end),
sweep.png (per configuration, the seeds as dots over a box) and sweep-curves.png
(every cell's ACC per epoch, ``curves``)."""
from __future__ import annotations

import os
import textwrap

import numpy as np
from matplotlib.figure import Figure

from dgg_tf.core.console import number, signed
from dgg_tf.core.files import write_json_atomic, write_text_atomic
from dgg_tf.report.runfiles import save_figure
from dgg_tf.sweep.curves import SLOPE_EPOCHS, plot_curves
from dgg_tf.sweep.results import METRICS, baselines, collect, describe, effects, protocol_line


def render_sweep(sweep, ranked):
    """sweep.md text."""
    lines = ["# DGG sweep", "", protocol_line(sweep["protocol"]), "",
             "ACC and NMI ('max') of the full pass after the final epoch; classifier ACC "
             "after classifier pretraining. Differences are paired by seed, with a 95% "
             "bootstrap interval over the seeds both ran.", "", "## Which switches move the "
             "result", ""]
    for rank, (name, e) in enumerate(ranked.items(), 1):
        acc, nmi = e["full_acc"], e["full_nmi"]
        verdict = "moves ACC" if e["moves"] else "no clear effect on ACC"
        lines.append(f"{rank}. {name} (vs {e['baseline']}): ACC {signed(acc['difference'])} "
                     f"[{signed(acc['low'])}, {signed(acc['high'])}], NMI {signed(nmi['difference'])} "
                     f"[{signed(nmi['low'])}, {signed(nmi['high'])}], n={acc['n']}: {verdict}")
    lines += ["", "## Per configuration", "",
              "| configuration | seeds | ACC mean ± sd | ACC min | ACC max | NMI mean ± sd | "
              "NMI min | NMI max | classifier ACC mean ± sd |", "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in sweep["configs"].items():
        a, n, c = (describe(entry[k]) for k in ("full_acc", "full_nmi", "classifier_acc"))
        lines.append(f"| {name} | {a['n']}/{len(entry['seeds'])} | {number(a['mean'])} ± "
                     f"{number(a['sd'])} | {number(a['min'])} | {number(a['max'])} | {number(n['mean'])} ± "
                     f"{number(n['sd'])} | {number(n['min'])} | {number(n['max'])} | {number(c['mean'])} ± "
                     f"{number(c['sd'])} |")
    lines += ["", "## Difference to the baseline", "",
              "| configuration | baseline | ACC diff [95% CI] | NMI diff [95% CI] | seeds |",
              "|---|---|---|---|---|"]
    for name, e in ranked.items():
        acc, nmi = e["full_acc"], e["full_nmi"]
        lines.append(f"| {name} | {e['baseline']} | {signed(acc['difference'])} [{signed(acc['low'])}, "
                     f"{signed(acc['high'])}] | {signed(nmi['difference'])} [{signed(nmi['low'])}, "
                     f"{signed(nmi['high'])}] | {acc['n']} |")
    return "\n".join(lines + _convergence_lines(sweep)) + "\n"


def _convergence_lines(sweep):
    """'## How flat the curves end': per configuration the GMM init's ACC, the epochs
    run so far and the ACC slope over the last epochs (sweep-curves.png)."""
    lines = ["", "## How flat the curves end", "",
             f"ACC change per 10 epochs over the last {SLOPE_EPOCHS} epochs of the seeds' mean "
             "curve (a least-squares line; cells still running count with their epochs so "
             "far). Curves: sweep-curves.png.", "",
             "| configuration | GMM init ACC | epochs run (per seed) | slope per 10 epochs |",
             "|---|---|---|---|"]
    for name, entry in sweep["configs"].items():
        gmm = describe(entry.get("gmm_acc") or [])
        runs = ", ".join(str(len(c)) for c in (entry.get("curves") or {}).values())
        lines.append(f"| {name} | {number(gmm['mean'])} | {runs or 'n/a'} | "
                     f"{signed(entry.get(f'slope_last_{SLOPE_EPOCHS}'))} |")
    return lines


def plot_sweep(path, sweep):
    """Per configuration, the seeds' final ACC and NMI as dots over a box."""

    names = list(sweep["configs"])
    fig = Figure(figsize=(max(8, 1.1 * len(names) + 3), 5))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, METRICS):
        data = [[v for v in sweep["configs"][n][metric] if v is not None] for n in names]
        ax.boxplot([d if d else [np.nan] for d in data], showfliers=False)
        for i, d in enumerate(data):
            jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(d))
            ax.plot(np.full(len(d), i + 1.0) + jitter, d, "o", color="C0", markersize=4)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel(metric.replace("full_", "").upper() + " (full pass, final epoch)")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("\n".join(textwrap.wrap(protocol_line(sweep["protocol"]), 150)), fontsize=8)
    save_figure(fig, path)


def write_summary(sweep_dir):
    """Write sweep.json, sweep.md and sweep.png; returns the sweep.json object."""
    sweep = collect(sweep_dir)
    ranked = effects(sweep, baselines(sweep_dir))
    write_json_atomic(os.path.join(sweep_dir, "sweep.json"), sweep)
    write_text_atomic(os.path.join(sweep_dir, "sweep.md"), render_sweep(sweep, ranked))
    plot_sweep(os.path.join(sweep_dir, "sweep.png"), sweep)
    plot_curves(os.path.join(sweep_dir, "sweep-curves.png"), sweep,
                "\n".join(textwrap.wrap(protocol_line(sweep["protocol"]), 150)))
    return sweep


