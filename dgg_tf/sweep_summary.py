"""What a sweep (``dgg_tf.sweep``) found: sweep.json (one value per seed), sweep.md
(per configuration mean +- sd, min, max; each configuration's difference to the one
it is compared with, with a 95% bootstrap interval; a ranked summary) and sweep.png
(per configuration, the seeds as dots over a box) and sweep-curves.png (every cell's
ACC per epoch, ``sweep_curves``).

Differences are paired by seed (the same seed gives the same shuffling, noise and f2
initialisation): the mean over the seeds both configurations ran of (configuration -
baseline), its interval from resampling those seeds."""
from __future__ import annotations

import os
import textwrap

import numpy as np

from .sweep_curves import SLOPE_EPOCHS, collect_curves, plot_curves

METRICS = ("full_acc", "full_nmi")
BOOTSTRAP_DRAWS = 10000


def collect(sweep_dir):
    """The sweep.json object: protocol, and per configuration its overrides, seeds,
    epochs and per-seed classifier_acc, full_acc, full_nmi (None: cell not finished)."""
    from .sweep import PLAN, cell_result, read_json
    plan = read_json(os.path.join(sweep_dir, PLAN))
    configs = {}
    for name, c in plan["configs"].items():
        entry = {"overrides": c["overrides"], "seeds": list(c["seeds"]),
                 "epochs": plan["protocol"]["epochs"],
                 "classifier_acc": [], "full_acc": [], "full_nmi": []}
        for seed in c["seeds"]:
            try:
                r = cell_result(sweep_dir, name, seed)
            except FileNotFoundError:
                r = {}
            if r.get("epochs") != entry["epochs"]:
                r = {"classifier_acc": r.get("classifier_acc")}
            for key in ("classifier_acc", "full_acc", "full_nmi"):
                entry[key].append(r.get(key))
        configs[name] = entry
    for name, extra in collect_curves(sweep_dir, plan).items():
        configs[name].update(extra)
    return {"protocol": plan["protocol"], "configs": configs}


def baselines(sweep_dir):
    """{configuration: the configuration it is compared with (None for code)}."""
    from .sweep import PLAN, read_json
    plan = read_json(os.path.join(sweep_dir, PLAN))
    return {name: c.get("baseline") for name, c in plan["configs"].items()}


def infer_baselines(sweep):
    """Baselines from sweep.json alone (its plan.json not at hand, e.g. committed results):
    a flip ``switch=value`` is compared with the configuration whose overrides are the
    largest strict part of its own (``sigma_mode=honoured`` on top of ``similarity=gauss``
    with the latter), every other configuration with code."""
    configs = sweep["configs"]
    out = {}
    for name, entry in configs.items():
        mine = set((entry.get("overrides") or {}).items())
        parts = [(len(o), other) for other, c in configs.items() if other != name
                 and "=" in other and (o := set((c.get("overrides") or {}).items())) < mine]
        out[name] = max(parts)[1] if "=" in name and parts else "code"
    out.pop("code", None)
    return out


def describe(values):
    """n, mean, sd (n-1), min, max of the finished values (None entries left out)."""
    v = np.array([a for a in values if a is not None], np.float64)
    if v.size == 0:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    return {"n": int(v.size), "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "min": float(v.min()), "max": float(v.max())}


def paired_difference(entry, base, metric, draws=BOOTSTRAP_DRAWS, seed=0):
    """Mean over the common seeds of (entry - base) for ``metric``, with a 95% bootstrap
    interval over those seeds: {difference, low, high, n, seeds}."""
    a = dict(zip(entry["seeds"], entry[metric]))
    b = dict(zip(base["seeds"], base[metric]))
    seeds = [s for s in entry["seeds"] if a.get(s) is not None and b.get(s) is not None]
    if not seeds:
        return {"difference": None, "low": None, "high": None, "n": 0, "seeds": []}
    d = np.array([a[s] - b[s] for s in seeds], np.float64)
    idx = np.random.default_rng(seed).integers(0, len(d), (draws, len(d)))
    means = d[idx].mean(axis=1)
    return {"difference": float(d.mean()), "low": float(np.percentile(means, 2.5)),
            "high": float(np.percentile(means, 97.5)), "n": len(seeds), "seeds": seeds}


def effects(sweep, compared_with=None):
    """Per configuration other than code: its baseline and the paired differences of
    ACC and NMI, ranked by the size of the ACC difference (largest first)."""
    compared_with = compared_with or {}
    out = {}
    for name, entry in sweep["configs"].items():
        base = compared_with.get(name, "code")
        if name == "code" or base not in sweep["configs"]:
            continue
        out[name] = {"baseline": base, "overrides": entry["overrides"],
                     **{m: paired_difference(entry, sweep["configs"][base], m) for m in METRICS}}
        acc = out[name]["full_acc"]
        out[name]["moves"] = (acc["n"] > 1 and acc["low"] is not None
                              and (acc["low"] > 0 or acc["high"] < 0))
    key = lambda kv: -abs(kv[1]["full_acc"]["difference"] or 0.0)    # noqa: E731
    return dict(sorted(out.items(), key=key))


def _pm(v, digits=4):
    return "n/a" if v is None else f"{v:+.{digits}f}"


def _num(v, digits=4):
    return "n/a" if v is None else f"{v:.{digits}f}"


def protocol_line(protocol):
    """One line saying how the sweep was run."""
    data = protocol.get("data") or {}
    return (f"protocol {protocol.get('name', '?')}: {data.get('n_samples')} samples "
            f"({data.get('source', 'data')}; neighbours: {data.get('neighbors', 'n/a')}), "
            f"{protocol['epochs']} epochs, {protocol['precision']}, seeds "
            f"{protocol['seeds']} (code, paper) / {protocol['flip_seeds']} (flips)")


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
        lines.append(f"{rank}. {name} (vs {e['baseline']}): ACC {_pm(acc['difference'])} "
                     f"[{_pm(acc['low'])}, {_pm(acc['high'])}], NMI {_pm(nmi['difference'])} "
                     f"[{_pm(nmi['low'])}, {_pm(nmi['high'])}], n={acc['n']}: {verdict}")
    lines += ["", "## Per configuration", "",
              "| configuration | seeds | ACC mean ± sd | ACC min | ACC max | NMI mean ± sd | "
              "NMI min | NMI max | classifier ACC mean ± sd |", "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in sweep["configs"].items():
        a, n, c = (describe(entry[k]) for k in ("full_acc", "full_nmi", "classifier_acc"))
        lines.append(f"| {name} | {a['n']}/{len(entry['seeds'])} | {_num(a['mean'])} ± "
                     f"{_num(a['sd'])} | {_num(a['min'])} | {_num(a['max'])} | {_num(n['mean'])} ± "
                     f"{_num(n['sd'])} | {_num(n['min'])} | {_num(n['max'])} | {_num(c['mean'])} ± "
                     f"{_num(c['sd'])} |")
    lines += ["", "## Difference to the baseline", "",
              "| configuration | baseline | ACC diff [95% CI] | NMI diff [95% CI] | seeds |",
              "|---|---|---|---|---|"]
    for name, e in ranked.items():
        acc, nmi = e["full_acc"], e["full_nmi"]
        lines.append(f"| {name} | {e['baseline']} | {_pm(acc['difference'])} [{_pm(acc['low'])}, "
                     f"{_pm(acc['high'])}] | {_pm(nmi['difference'])} [{_pm(nmi['low'])}, "
                     f"{_pm(nmi['high'])}] | {acc['n']} |")
    return "\n".join(lines + _convergence_lines(sweep)) + "\n"


def _convergence_lines(sweep):
    """'## How flat the curves end': per configuration the GMM init's ACC, the epochs
    run so far and the ACC slope over the last epochs (sweep-curves.png)."""
    lines = ["", "## How flat the curves end", "",
             f"ACC change per 10 epochs over the last {SLOPE_EPOCHS} epochs of the seeds' mean "
             "curve (a least-squares line; cells still running count with their epochs so "
             "far). Curves: sweep-curves.png.", "",
             f"| configuration | GMM init ACC | epochs run (per seed) | slope per 10 epochs |",
             "|---|---|---|---|"]
    for name, entry in sweep["configs"].items():
        gmm = describe(entry.get("gmm_acc") or [])
        runs = ", ".join(str(len(c)) for c in (entry.get("curves") or {}).values())
        lines.append(f"| {name} | {_num(gmm['mean'])} | {runs or 'n/a'} | "
                     f"{_pm(entry.get(f'slope_last_{SLOPE_EPOCHS}'))} |")
    return lines


def plot_sweep(path, sweep):
    """Per configuration, the seeds' final ACC and NMI as dots over a box."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report.runfiles import save_figure
    names = list(sweep["configs"])
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(names) + 3), 5))
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
    from .report import write_json_atomic, write_text_atomic
    sweep = collect(sweep_dir)
    ranked = effects(sweep, baselines(sweep_dir))
    write_json_atomic(os.path.join(sweep_dir, "sweep.json"), sweep)
    write_text_atomic(os.path.join(sweep_dir, "sweep.md"), render_sweep(sweep, ranked))
    plot_sweep(os.path.join(sweep_dir, "sweep.png"), sweep)
    plot_curves(os.path.join(sweep_dir, "sweep-curves.png"), sweep,
                protocol_line(sweep["protocol"]))
    return sweep


def load_effects(sweep_dir):
    """(sweep.json object, ranked effects) of a sweep directory, for the report."""
    from .sweep import read_json
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.exists(path):
        raise ValueError(f"{sweep_dir} holds no sweep.json (run reproduce/sweep.py first)")
    sweep = read_json(path)
    try:
        compared = baselines(sweep_dir)
    except FileNotFoundError:
        compared = infer_baselines(sweep)
    return sweep, effects(sweep, compared)
