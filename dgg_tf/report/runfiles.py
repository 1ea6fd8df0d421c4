"""Files of a run: history.csv, the curves plot, and reading a run directory back
(``load_run``)."""
from __future__ import annotations

import csv
import io
import json
import os

from matplotlib.figure import Figure

from dgg_tf.core.files import atomic_path, write_text_atomic
from dgg_tf.report.quirks import QUIRK_IDS


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
    write_text_atomic(path, buf.getvalue())


def _parse_cell(text):
    """A history.csv cell as None, int, float or the text itself."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_history_csv(path):
    """The records of a history.csv written by ``write_history_csv``."""
    with open(path, newline="") as f:
        return [{k: _parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _plot_metric(ax, runs, metric):
    """One panel: ``metric`` (acc, nmi: full pass solid, running dashed; loss) per run, and
    for ACC each run's pretrained classifier ACC as a dotted reference line."""
    for i, run in enumerate(runs):
        hist, color = run.get("history") or [], run.get("_color", f"C{i}")
        kinds = (("", "-"),) if metric == "loss" else (("full_", "-"), ("running_", "--"))
        for kind, style in kinds:
            pts = [(r["epoch"], r[kind + metric]) for r in hist
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


def save_figure(fig, path):
    """Save a matplotlib ``Figure`` as PNG at ``path`` atomically. Figures are made with
    ``matplotlib.figure.Figure``, not pyplot: no global backend or figure list is
    touched in the user's process."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


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
        run["classifier_acc"] = (meta.get("classifier") or {}).get("acc")
        run["first_steps"] = meta.get("first_steps") or []
        run["has_config"] = True
        run["seed"] = meta.get("seed")
        run["finished"] = meta.get("finished")
        run["configured_epochs"] = (run["config"] or {}).get("epochs", meta.get("epochs"))
    rep_path = os.path.join(run_dir, "report.json")
    if os.path.exists(rep_path):
        with open(rep_path) as f:
            rep = json.load(f)
        run["audit"] = {k: v for k, v in rep.items() if k in QUIRK_IDS or k == "setup"}
    return run
