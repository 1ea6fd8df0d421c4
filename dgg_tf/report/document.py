"""The report object (report.json) of an audit and/or finished runs, and writing it
with its markdown rendering (report.md)."""
from __future__ import annotations

import datetime
import os

import numpy as np

from dgg_tf.core.collapse import collapse_epochs
from dgg_tf.core.files import clean, write_json_atomic, write_text_atomic
from dgg_tf.core.rundir import REPORT_JSON, REPORT_MD
from dgg_tf.report.compare import build_comparison
from dgg_tf.report.effects import sweep_effects
from dgg_tf.report.markdown import render_markdown
from dgg_tf.report.quirks import QUIRK_IDS, REPORT_FORMAT, measured_part, quirk_text


def summarize_run(run):
    """Final and best full-pass / running ACC and NMI of a run dict (name, history, ...)."""
    hist = run.get("history") or []
    out = {"name": run.get("name"), "variant": run.get("variant"), "epochs": len(hist),
           "seconds": float(sum(r.get("seconds", 0.0) or 0.0 for r in hist))}
    if run.get("classifier_acc") is not None:
        out["classifier_acc"] = run["classifier_acc"]
    if run.get("first_steps"):
        out["first_steps"] = run["first_steps"]
    if collapse_epochs(hist):
        out["warnings"] = {"collapse": collapse_epochs(hist)}
    if not hist:
        return out
    last = hist[-1]
    out["final"] = {k: last.get(k) for k in ("full_acc", "full_nmi", "running_acc", "running_nmi",
                                             "loss")}
    best = {}
    for key in ("full_acc", "full_nmi", "running_acc", "running_nmi"):
        vals = [(r[key], r["epoch"]) for r in hist if r.get(key) is not None]
        if vals:
            v, e = max(vals, key=lambda t: (t[0], -t[1]))
            best[key] = {"value": v, "epoch": e}
    out["best"] = best
    return out


def build_report(audit_dict=None, runs=None, sweep=None, summary=None):
    """The report.json object: Q1..Q12 (text + measurements), setup, runs; with
    ``sweep`` (``(directory, protocol line, ranked effects)`` of a sweep) each flipped
    quirk's effect on the final result."""
    runs = list(runs or [])
    effect = sweep_effects(*sweep) if sweep else {}
    rep = {"format": REPORT_FORMAT,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    if summary is not None:
        rep["summary"] = summary
    by_run = audit_dict is None and any(r.get("audit") for r in runs)
    for qid in QUIRK_IDS:
        entry = quirk_text(qid)
        if audit_dict is not None and qid in audit_dict:
            entry.update(measured_part(audit_dict[qid]))
        if qid in effect:
            entry["effect_on_final_result"] = effect[qid]
        elif by_run:
            entry["runs"] = {r["name"]: measured_part(r["audit"][qid])
                             for r in runs if r.get("audit") and qid in r["audit"]}
        rep[qid] = entry
    if runs:
        hist_q12 = {r["name"]: running_vs_full(r["history"]) for r in runs if r.get("history")}
        if hist_q12:
            rep["Q12"]["running_vs_full_by_run"] = hist_q12
        rep["runs"] = [summarize_run(r) for r in runs]
        if len(runs) > 1:
            rep["comparison"] = build_comparison(runs, rep["runs"])
    if effect:
        rep["sweep"] = effect["sweep"]
    if audit_dict is not None and "setup" in audit_dict:
        rep["setup"] = audit_dict["setup"]
    elif by_run:
        rep["setup"] = {r["name"]: r["audit"].get("setup") for r in runs if r.get("audit")}
    return clean(rep)


def write_report(out_dir, audit_dict=None, runs=None, sweep=None, summary=None):
    """Write ``report.md`` and ``report.json`` into ``out_dir`` (atomically); returns the
    report object. ``audit_dict``: one audit (``audit``'s result) or None; ``runs``:
    run dicts (name, variant, history and optionally their own ``audit``) for the run
    comparison and Q12, and, without ``audit_dict``, per-run measurements; ``sweep``: a
    sweep's (directory, protocol line, ranked effects) for the effect of each quirk on
    the final result."""
    os.makedirs(out_dir, exist_ok=True)
    rep = build_report(audit_dict, runs, sweep, summary)
    write_json_atomic(os.path.join(out_dir, REPORT_JSON), rep)
    write_text_atomic(os.path.join(out_dir, REPORT_MD), render_markdown(rep))
    return rep


def running_vs_full(history):
    """Q12 numbers of one training history: final and mean gaps between the running
    (the original's) and the full-pass ACC/NMI."""
    rows = [r for r in history if r.get("running_acc") is not None and r.get("full_acc") is not None]
    if not rows:
        return {"note": "no labelled epochs"}
    last = rows[-1]
    gap_acc = [r["running_acc"] - r["full_acc"] for r in rows]
    gap_nmi = [r["running_nmi"] - r["full_nmi"] for r in rows]
    out = {"epochs": len(rows),
           "final": {"running_acc": last["running_acc"], "full_acc": last["full_acc"],
                     "running_nmi_max": last["running_nmi"], "full_nmi_max": last["full_nmi"],
                     "full_nmi_arithmetic": last.get("full_nmi_arithmetic")},
           "acc_gap (running - full)": {"final": gap_acc[-1], "mean": float(np.mean(gap_acc)),
                                        "max_abs": float(np.max(np.abs(gap_acc)))},
           "nmi_gap (running - full)": {"final": gap_nmi[-1], "mean": float(np.mean(gap_nmi)),
                                        "max_abs": float(np.max(np.abs(gap_nmi)))}}
    if last.get("full_nmi_arithmetic") is not None:
        out["final_nmi_max_minus_arithmetic"] = last["full_nmi"] - last["full_nmi_arithmetic"]
    return out
