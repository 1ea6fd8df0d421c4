"""The comparison of several runs (report.json "comparison", report.md '## Comparison'):
what each run was run on (data size, subset, data and table fingerprints, epochs,
precision, backend, seed) and which of those differ, the settings that differ between
the runs' configs, each final metric side by side with its difference to the first run,
and warnings (different data, single seed, short run, unfinished run)."""
from __future__ import annotations

from dgg_tf.core.rundir import RunDir
from dgg_tf.report.findings import n

FINAL_METRICS = ("full_acc", "full_nmi", "loss")
SHORT_RUN = 50


def run_state(run):
    """{"seed", "configured_epochs", "epochs", "finished", "unfinished"} of a run dict
    (``load_run``'s): unfinished when config.json has no "finished" entry or fewer
    epochs were trained than configured; None when there is no config.json to tell."""
    hist = run.get("history") or []
    state = {"seed": run.get("seed"), "configured_epochs": run.get("configured_epochs"),
             "epochs": len(hist), "finished": run.get("finished")}
    if not run.get("has_config"):
        state["unfinished"] = None
        return state
    done = run.get("finished")
    configured = state["configured_epochs"]
    done_epochs = done.get("epochs") if isinstance(done, dict) else None
    trained = max(len(hist), done_epochs or 0)
    state["unfinished"] = (not done or (isinstance(configured, int) and trained < configured))
    return state


#: What a run was run on besides its switches: a difference in any of these changes
#: what a difference in ACC means.
CONDITIONS = ("images", "subset", "data", "data fingerprint", "neighbour table",
              "epochs trained", "configured epochs", "precision", "backend", "seed")


def run_conditions(run):
    """{condition: value or None} of a run dict (``load_run``'s), read from its record
    (config.json) where its directory has one."""
    record = None
    if run.get("dir"):
        try:
            record = RunDir(run["dir"]).read_record()
        except (OSError, ValueError):
            record = None
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    info = record.info if record else {}
    versions = (record.library_versions if record else None) or {}
    seed = run.get("seed")
    return {"images": record.n_samples if record else None,
            "subset": (info.get("subset") or "all") if record else None,
            "data": info.get("data") or info.get("source"),
            "data fingerprint": record.data_fingerprint if record else None,
            "neighbour table": record.table_fingerprint if record else None,
            "epochs trained": len(run.get("history") or []),
            "configured epochs": run.get("configured_epochs") or config.get("epochs"),
            "precision": config.get("precision"),
            "backend": versions.get("backend"),
            "seed": seed if seed is not None else config.get("seed")}


def _differs(values):
    known = [repr(v) for v in values if v is not None]
    return len(set(known)) > 1 or (0 < len(known) < len(values))


def data_warning(conditions):
    """A warning when the runs saw different data (another number of images, another
    subset, or another data fingerprint), else None."""
    parts = [k for k in ("images", "subset", "data fingerprint")
             if _differs(list(c[k] for c in conditions.values()))]
    if not parts:
        return None
    seen = ", ".join(f"{name}: {c['images'] if c['images'] is not None else '?'} images"
                     + (f" (first {c['subset']})" if c["subset"] not in (None, "all") else "")
                     for name, c in conditions.items())
    return (f"DIFFERENT DATA ({', '.join(parts)} differ): {seen}. The differences in "
            "the final metrics compare runs on different data, not only different settings")


def differing_settings(runs):
    """{setting: {run name: value}} of every config setting that differs between runs."""
    configs = {r["name"]: r.get("config") for r in runs if isinstance(r.get("config"), dict)}
    keys = []
    for c in configs.values():
        keys += [k for k in c if k not in keys]
    return {k: {name: c.get(k) for name, c in configs.items()} for k in keys
            if len({repr(c.get(k)) for c in configs.values()}) > 1}


def final_side_by_side(summaries):
    """{metric: {"values": {run: value}, "difference": {"<run> - <first>": value}}}."""
    first = summaries[0]
    out = {}
    for key in FINAL_METRICS:
        values = {s["name"]: (s.get("final") or {}).get(key) for s in summaries}
        base = values[first["name"]]
        diff = {f"{s['name']} - {first['name']}":
                (values[s["name"]] - base if isinstance(values[s["name"]], (int, float))
                 and isinstance(base, (int, float)) else None) for s in summaries[1:]}
        out[key] = {"values": values, "difference": diff}
    return out


def _warnings(runs, states, conditions):
    warning = data_warning(conditions)
    out = [warning] if warning else []
    for r in runs:
        st = states[r["name"]]
        out.append(f"{r['name']}: one seed only (seed {st['seed'] if st['seed'] is not None else '?'}); "
                   "a difference between single runs includes seed-to-seed variation "
                   "(reproduce/sweep.py pairs several seeds)")
        if st["epochs"] < SHORT_RUN:
            out.append(f"{r['name']}: {st['epochs']} epochs, fewer than {SHORT_RUN}: the final "
                       "numbers are those of a short run")
        if st["unfinished"]:
            out.append(f"{r['name']}: UNFINISHED: {st['epochs']} of {st['configured_epochs']} "
                       "configured epochs"
                       + ("" if st["finished"] else "; config.json has no 'finished' entry"))
        elif st["unfinished"] is None:
            out.append(f"{r['name']}: no config.json: cannot tell whether it finished")
    return out


def build_comparison(runs, summaries):
    """report.json's "comparison" object of several runs."""
    states = {r["name"]: run_state(r) for r in runs}
    conditions = {r["name"]: run_conditions(r) for r in runs}
    by_condition = {k: {name: c[k] for name, c in conditions.items()} for k in CONDITIONS}
    return {"runs": [r["name"] for r in runs], "conditions": by_condition,
            "differing_conditions": [k for k, v in by_condition.items()
                                     if _differs(list(v.values()))],
            "differing_settings": differing_settings(runs),
            "final": final_side_by_side(summaries), "states": states,
            "warnings": _warnings(runs, states, conditions)}


def _fmt(v):
    return "n/a" if v is None else n(v) if isinstance(v, (int, float)) else str(v)


def comparison_section(rep):
    """'## Comparison' lines of report.md (empty without a comparison)."""
    comp = rep.get("comparison")
    if not comp:
        return []
    names = comp["runs"]
    lines = ["## Comparison", "", f"Runs: {', '.join(names)}; differences are each run "
             f"minus the first ({names[0]}).", ""]
    if comp.get("conditions"):
        lines += ["What the runs were run on (a difference here changes what the numbers "
                  "mean):", ""]
        differing = comp.get("differing_conditions", [])
        lines += [f"- {k}: " + ", ".join(f"{name}={'n/a' if v is None else v}"
                                         for name, v in vals.items())
                  + (" **(differs)**" if k in differing else "")
                  for k, vals in comp["conditions"].items()] + [""]
    lines += ["Settings that differ between the runs' configs:", ""]
    diff = comp["differing_settings"]
    lines += [f"- {k}: " + ", ".join(f"{name}={_fmt(v)}" for name, v in vals.items())
              for k, vals in diff.items()] or ["- none (or no config.json to compare)"]
    diff_cols = list(next(iter(comp["final"].values()))["difference"])
    lines += ["", "| final | " + " | ".join(names + diff_cols) + " |",
              "|---|" + "---|" * (len(names) + len(diff_cols))]
    for key, v in comp["final"].items():
        cells = [_fmt(v["values"].get(a)) for a in names]
        cells += [_fmt(v["difference"][c]) if v["difference"][c] is None
                  else f"{v['difference'][c]:+.4g}" for c in diff_cols]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("")
    if comp["warnings"]:
        lines += ["Warnings:", ""] + [f"- {w}" for w in comp["warnings"]] + [""]
    return lines
