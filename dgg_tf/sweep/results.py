"""What a sweep found, as numbers: sweep.json (one value per seed and configuration,
with the per-epoch curves), each configuration's paired difference to its baseline
with a 95% bootstrap interval, and the ranked effects the report reads.

Differences are paired by seed (the same seed gives the same shuffling, noise and f2
initialisation): the mean over the seeds both configurations ran of (configuration -
baseline), its interval from resampling those seeds. No TensorFlow."""
from __future__ import annotations

import os

import numpy as np

from dgg_tf.sweep.cells import PLAN, cell_result, read_json
from dgg_tf.sweep.curves import collect_curves

METRICS = ("full_acc", "full_nmi")


BOOTSTRAP_DRAWS = 10000


def collect(sweep_dir):
    """The sweep.json object: protocol, and per configuration its overrides, seeds,
    epochs and per-seed classifier_acc, full_acc, full_nmi (None: cell not finished)."""
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


def protocol_line(protocol):
    """One line saying how the sweep was run."""
    data = protocol.get("data") or {}
    return (f"protocol {protocol.get('name', '?')}: {data.get('n_samples')} samples "
            f"({data.get('source', 'data')}; neighbours: {data.get('neighbors', 'n/a')}), "
            f"{protocol['epochs']} epochs, {protocol['precision']}, seeds "
            f"{protocol['seeds']} (code, paper) / {protocol['flip_seeds']} (flips)")


def load_effects(sweep_dir):
    """(sweep.json object, ranked effects) of a sweep directory, for the report."""
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.exists(path):
        raise ValueError(f"{sweep_dir} holds no sweep.json (run reproduce/sweep.py first)")
    sweep = read_json(path)
    try:
        compared = baselines(sweep_dir)
    except FileNotFoundError:
        compared = infer_baselines(sweep)
    return sweep, effects(sweep, compared)
