"""A run's figures (the curves plot) and reading a run directory back as the report's
run dict (``load_run``, through ``core.rundir.RunDir``)."""
from __future__ import annotations

import os

from matplotlib.figure import Figure

from dgg_tf.core.files import atomic_path
from dgg_tf.core.rundir import HISTORY, RunDir
from dgg_tf.report.quirks import QUIRK_IDS


def _probe_points(run, metric):
    """The full-pass ``metric`` after DGG's first steps (``first_steps``) as (epoch, value)
    points, a step at ``step / steps_per_epoch`` epochs: the curve's start, which a
    one-epoch run would otherwise not show. None where the steps per epoch are unknown."""
    steps = run.get("steps_per_epoch")
    if not steps or metric == "loss":
        return []
    return [(e["step"] / steps, e["full_" + metric]) for e in run.get("first_steps") or []
            if isinstance(e.get("full_" + metric), (int, float))]


def _plot_metric(ax, runs, metric):
    """One panel: ``metric`` (acc, nmi: full pass solid, running dashed; loss) per run, and
    for ACC each run's pretrained classifier ACC as a dotted reference line. The full
    pass starts with the probes after DGG's first steps (``_probe_points``)."""
    for i, run in enumerate(runs):
        hist, color = run.get("history") or [], run.get("_color", f"C{i}")
        kinds = (("", "-"),) if metric == "loss" else (("full_", "-"), ("running_", "--"))
        for kind, style in kinds:
            pts = (_probe_points(run, metric) if kind == "full_" else []) + [
                (r["epoch"], r[kind + metric]) for r in hist
                if isinstance(r.get(kind + metric), (int, float))]
            if pts:
                e, v = zip(*pts)
                ax.plot(e, v, style, color=color, marker="o" if len(pts) < 20 else None,
                        markersize=3, label=f"{run.get('name', 'run')} {kind.rstrip('_')}".strip())
        if metric == "acc" and run.get("classifier_acc") is not None:
            ax.axhline(run["classifier_acc"], color=color, linestyle=":", linewidth=1,
                       label=f"{run.get('name', 'run')} pretrained classifier")


def plot_curves(path, runs):
    """ACC and NMI against epoch (full pass solid, running dashed; the pretrained
    classifier's ACC dotted) and the loss, for one or more runs: each run's loss on its
    own axis (the variants' losses differ in scale, Q10)."""
    n_loss = max(1, len(runs))
    fig = Figure(figsize=(5 * (2 + n_loss), 4))
    axes = fig.subplots(1, 2 + n_loss, squeeze=False)
    titles = {"acc": "ACC: full pass (solid), running (dashed), classifier (dotted)",
              "nmi": "NMI: full pass (solid), running (dashed)", "loss": "loss (epoch mean)"}
    panels = [("acc", runs, "acc"), ("nmi", runs, "nmi")] + [
        ("loss", [r], "loss" if len(runs) == 1 else f"loss of {r.get('name', 'run')}")
        for r in runs]
    for i, (ax, (metric, shown, title)) in enumerate(zip(axes[0], panels)):
        if metric == "loss" and len(runs) > 1:
            # the colour of each run as in the ACC/NMI panels
            shown = [dict(runs[i - 2], _color=f"C{i - 2}")]
        _plot_metric(ax, shown, metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.upper() + (" (NMI 'max')" if metric == "nmi" else ""))
        ax.set_title(titles[metric] if title == metric else f"{title} (epoch mean)", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    save_figure(fig, path)


def steps_per_epoch(record):
    """Training steps per epoch of the run ``record`` (a ``RunRecord``): None when its
    data size or batch size is not recorded."""
    n, batch = record.n_samples, (record.config or {}).get("batch_size")
    return -(-int(n) // int(batch)) if n and batch else None


def save_figure(fig, path):
    """Save a matplotlib ``Figure`` as PNG at ``path`` atomically. Figures are made with
    ``matplotlib.figure.Figure``, not pyplot: no global backend or figure list is
    touched in the user's process."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def load_run(run_dir):
    """A finished (or running) run directory of reproduce/mnist.py as a run dict: name,
    directory and history; with its record (config.json) the variant, config, seed,
    pretrained classifier's ACC, first steps (and the steps per epoch that place them),
    how it finished and the configured epochs; with its report.json the stored audit."""
    rd = RunDir(run_dir)
    if not os.path.isdir(rd.path):
        raise ValueError(f"run directory {rd.path} does not exist")
    history = rd.read_history()
    if history is None:
        raise ValueError(f"{rd.path} holds no {HISTORY} (not a training run of "
                         "reproduce/mnist.py)")
    run = {"name": rd.name, "dir": rd.path, "history": history}
    record = rd.read_record()
    if record is not None:
        run.update(variant=record.variant, config=record.config,
                   classifier_acc=record.classifier_acc, first_steps=record.first_steps or [],
                   has_config=True, seed=record.seed, finished=record.finished,
                   configured_epochs=record.configured_epochs,
                   steps_per_epoch=steps_per_epoch(record))
    rep = rd.read_report()
    if rep is not None:
        run["audit"] = {k: v for k, v in rep.items() if k in QUIRK_IDS or k == "setup"}
    return run
