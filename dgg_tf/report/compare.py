"""The comparison of several runs (report.json "comparison", report.md '## Comparison'):
the settings that differ between the runs' configs, each final metric side by side with
its difference to the first run, and warnings (single seed, short run, unfinished run)."""
from __future__ import annotations

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


def _warnings(runs, states):
    out = []
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
    return {"runs": [r["name"] for r in runs], "differing_settings": differing_settings(runs),
            "final": final_side_by_side(summaries), "states": states,
            "warnings": _warnings(runs, states)}


def _fmt(v):
    return "n/a" if v is None else n(v) if isinstance(v, (int, float)) else str(v)


def comparison_section(rep):
    """'## Comparison' lines of report.md (empty without a comparison)."""
    comp = rep.get("comparison")
    if not comp:
        return []
    names = comp["runs"]
    lines = ["## Comparison", "", f"Runs: {', '.join(names)}; differences are each run "
             f"minus the first ({names[0]}).", "", "Settings that differ between the runs' "
             "configs:", ""]
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
