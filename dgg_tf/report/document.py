"""The report object (report.json) of an audit and/or finished runs, and writing it
with its markdown rendering (report.md)."""
from __future__ import annotations

import datetime
import os

from ..collapse import collapse_epochs
from ..files import clean, write_json_atomic, write_text_atomic
from .compare import build_comparison
from .effects import sweep_effects
from .markdown import render_markdown
from .measures_run import running_vs_full
from .quirks import QUIRK_IDS, REPORT_FORMAT, measured_part, quirk_text


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
    write_json_atomic(os.path.join(out_dir, "report.json"), rep)
    write_text_atomic(os.path.join(out_dir, "report.md"), render_markdown(rep))
    return rep
