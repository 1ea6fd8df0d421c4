"""report.md: the report object (``build_report``) rendered as markdown tables."""
from __future__ import annotations

from dgg_tf.core import config as config_module
from dgg_tf.core.config import DIAGNOSTICS
from dgg_tf.core.record import summary_lines
from dgg_tf.report.compare import comparison_section
from dgg_tf.report.effects import effects_section
from dgg_tf.report.findings import findings_section
from dgg_tf.report.quirks import QUIRK_IDS, QUIRK_SWITCHES, QUIRKS, measured_part

_INTRO = ("One section per quirk of `docs/quirks.md` in the dgg_tf repository (Q1..Q12): what the "
          "original code does, what the paper says, and measurements of both settings on "
          "the same weights, batches and noise. Numbers are also in `report.json` under the "
          "same keys.")


def fmt(v):
    """One value as table text (6 significant digits; long lists shortened)."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.6g}"
    if isinstance(v, list):
        if len(v) <= 10 and all(not isinstance(a, (dict, list)) for a in v):
            return ", ".join(fmt(a) for a in v)
        return (", ".join(fmt(a) for a in v[:4]) + f", ... ({len(v)} values; full list in "
                "report.json)")
    return str(v).replace("|", "\\|").replace("\n", " ")


def _is_scalar(v):
    return not isinstance(v, (dict, list)) or (isinstance(v, list) and all(
        not isinstance(a, (dict, list)) for a in v))


def _is_flat(v):
    return isinstance(v, dict) and bool(v) and all(_is_scalar(a) for a in v.values())


def _groups(columns):
    """``columns`` (flat dicts) grouped by their key sets, first appearance order: only
    dicts with the same keys share a table (no table of mostly empty cells)."""
    groups = {}
    for name, v in columns.items():
        groups.setdefault(tuple(v), {})[name] = v
    return list(groups.values())


def _table(lines, columns):
    """Tables of flat dicts: a column per dict (dicts with the same keys side by side), a
    row per inner key; rows without any value are left out."""
    for group in _groups(columns):
        cols = list(group)
        rows = [r for r in next(iter(group.values()))
                if any(group[c].get(r) is not None for c in cols)]
        if not rows:
            continue
        lines += ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for r in rows:
            lines.append(f"| {r} | " + " | ".join(fmt(group[c].get(r)) for c in cols) + " |")
        lines.append("")


def _has_value(v):
    """Whether ``v`` holds any value that is not None (nested dicts and lists too)."""
    if isinstance(v, dict):
        return any(_has_value(a) for a in v.values())
    if isinstance(v, list):
        return any(_has_value(a) for a in v)
    return v is not None


def _render(lines, data, depth=0):
    """Generic renderer: scalars as a quantity/value table; flat dicts side by side in
    one table; a dict of flat dicts as its own table; deeper dicts as labelled blocks."""
    scalars = {k: v for k, v in data.items()
               if _is_scalar(v) and k != "note" and v is not None and v != []}
    flats = {k: v for k, v in data.items() if _is_flat(v)}
    if scalars:
        lines += ["| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in scalars.items()]
        lines.append("")
    if flats:
        _table(lines, flats)
    for key, value in data.items():
        if key in scalars or key in flats or key == "note" or not isinstance(value, dict) \
                or not _has_value(value):
            continue
        if value and all(_is_flat(v) for v in value.values()):
            lines += [f"*{key}*", ""]
            _table(lines, value)
        elif value:
            lines += [f"**{key}**" if depth == 0 else f"*{key}*", ""]
            _render(lines, value, depth + 1)
    if isinstance(data.get("note"), str):
        lines += [f"Note: {data['note']}", ""]


def _render_schedule(lines, q8):
    """Q8's DGG learning rate per epoch, a column per schedule setting (``lr_<setting>``
    lists), rows where the settings disagree marked."""
    dgg = q8.get("dgg") if isinstance(q8, dict) else None
    if not isinstance(dgg, dict):
        return
    modes = [k[3:] for k, v in dgg.items() if k.startswith("lr_") and isinstance(v, list)]
    if not modes:
        return
    n = min(len(dgg[f"lr_{m}"]) for m in modes)
    if isinstance(dgg.get("epochs"), int) and dgg["epochs"] >= 0:
        n = min(n, dgg["epochs"])
    lines += [f"DGG learning rate per epoch (0-based), the run's {n} epochs:", "",
              "| epoch | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for e in range(n):
        row = [dgg[f"lr_{m}"][e] for m in modes]
        mark = " **differs**" if any(v != row[0] for v in row) else ""
        lines.append(f"| {e} | " + " | ".join(fmt(v) for v in row) + f"{mark} |")
    lines.append("")


def _q8_view(q8):
    """Q8's measurements as shown: each schedule's learning-rate lists cut to its
    epochs, and 'no decay' said in words instead of an empty first_decay_epoch."""
    out = dict(q8)
    for name, sched in q8.items():
        if not isinstance(sched, dict) or "first_decay_epoch" not in sched:
            continue
        epochs = sched.get("epochs")
        sched = dict(sched)
        if isinstance(epochs, int) and epochs >= 0:
            sched.update({k: v[:epochs] for k, v in sched.items()
                          if k.startswith("lr_") and isinstance(v, list)})
        if isinstance(sched["first_decay_epoch"], dict):
            sched["first_decay_epoch"] = {
                k: ("no decay in the listed epochs" if v is None else v)
                for k, v in sched["first_decay_epoch"].items()}
        out[name] = sched
    return out


def _runs_section(runs):
    """The '## Runs' table: final and best ACC/NMI of each run."""
    lines = ["## Runs", "",
             "| run | variant | epochs | final ACC | final NMI | best ACC (epoch) | "
             "best NMI (epoch) | final running ACC | final running NMI | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        fin, best = r.get("final") or {}, r.get("best") or {}

        def b(key):
            v = best.get(key)
            return f"{fmt(v['value'])} ({v['epoch']})" if v else "n/a"
        lines.append(f"| {r['name']} | {r.get('variant') or 'n/a'} | {r['epochs']} | "
                     f"{fmt(fin.get('full_acc'))} | {fmt(fin.get('full_nmi'))} | "
                     f"{b('full_acc')} | {b('full_nmi')} | {fmt(fin.get('running_acc'))} | "
                     f"{fmt(fin.get('running_nmi'))} | {fmt(r.get('seconds'))} |")
    return lines + ["", "ACC/NMI: full pass over all samples after the epoch (NMI 'max' as the "
                    "original prints); running = the original's per-step predictions (Q12). "
                    "Curves: `curves.png`.", ""] + _first_steps_lines(runs)


def _first_steps_lines(runs):
    """Each run's full-pass ACC after its first DGG steps, from the pretrained classifier's."""
    lines = [f"- {r['name']}: pretrained classifier {fmt(r.get('classifier_acc'))}; "
             + "; ".join(f"after step {e['step']}: {fmt(e['full_acc'])} "
                         f"({e['clusters_used']} clusters)" for e in r["first_steps"])
             for r in runs if r.get("first_steps")]
    if not lines:
        return []
    return ["Full-pass ACC after the first DGG steps (Adam's first update moves every weight "
            "by the learning rate; `dgg_tf.collapse`):", ""] + lines + [""]


def _warnings_section(runs):
    """'## Warnings': the epochs of each run that ended in a collapse (``dgg_tf.collapse``)."""
    lines = []
    for r in runs:
        for e in (r.get("warnings") or {}).get("collapse", []):
            lines.append(f"- {r['name']}, epoch {e['epoch']}: collapse ({fmt(e['clusters_used'])} "
                         f"clusters in use, full-pass ACC {fmt(e['full_acc'])}; pretrained "
                         f"classifier ACC {fmt(r.get('classifier_acc'))})")
    if not lines:
        return []
    return ["## Warnings", "", "A collapse: fewer than half the clusters in use, or full-pass "
            "ACC below half the pretrained classifier's. Training went on.", ""] + lines + [""]


def other_switches(config):
    """'name=value (choices)' of every CHOICES switch without a quirk section (precision,
    pretrain_schedule, likelihood, ...), read from a config dict; '' without one."""
    if not isinstance(config, dict):
        return ""
    return "; ".join(f"{name}={config.get(name, 'n/a')} ({' / '.join(allowed)})"
                     for name, allowed in config_module.CHOICES.items()
                     if name not in QUIRK_SWITCHES.values())


def diagnostics_line(config):
    """'name=value' of every diagnostic setting (config.DIAGNOSTICS), read from a config
    dict ('n/a' for a config written before it existed); '' without a config."""
    if not isinstance(config, dict):
        return ""
    return "; ".join(f"{name}={config.get(name, 'n/a')}" for name in DIAGNOSTICS)


def _setup_section(setup):
    """'## Audit setup': one audit's setup, or one block per run (config left out but
    for the switches that no quirk section shows)."""
    lines = ["## Audit setup", ""]
    if "n_batches" in setup:
        _render(lines, {**{k: v for k, v in setup.items() if k != "config"},
                        "other switches": other_switches(setup.get("config")),
                        "diagnostics (in neither the code nor the paper)":
                            diagnostics_line(setup.get("config"))})
    else:
        for name, s in setup.items():
            if s:
                lines += [f"*{name}*", ""]
                _render(lines, {k: v for k, v in s.items() if k != "config"})
    return lines


def _flatten(data, prefix=""):
    """{'a / b': value} of a nested dict's leaves (notes left out)."""
    out = {}
    for k, v in data.items():
        if k == "note":
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k} / "))
        else:
            out[prefix + k] = v
    return out


def _side_by_side(lines, qid, runs):
    """Several runs' measurements of one quirk: once when the same in every run, else
    one table with a column per run (rows where some run has a value)."""
    # Q12's running-vs-full numbers of every run are shown once, below
    views = {name: (_q8_view(m) if qid == "Q8" else
                    {k: v for k, v in m.items() if k != "running_vs_full_by_run"})
             for name, m in runs.items()}
    first = next(iter(views.values()))
    if all(v == first for v in views.values()):
        lines += [f"### {qid}, the same in every run ({', '.join(views)})", ""]
        _render(lines, first)
        if qid == "Q8":
            _render_schedule(lines, first)
        return
    flat = {name: _flatten(v) for name, v in views.items()}
    keys = []
    for f in flat.values():
        keys += [k for k in f if k not in keys]
    keys = [k for k in keys if any(f.get(k) is not None for f in flat.values())]
    lines += [f"### {qid} side by side", "", "| quantity | " + " | ".join(flat) + " |",
              "|---|" + "---|" * len(flat)]
    lines += [f"| {k} | " + " | ".join(fmt(f.get(k)) for f in flat.values()) + " |"
              for k in keys]
    lines.append("")
    notes = list(dict.fromkeys(v["note"] for v in views.values()
                               if isinstance(v.get("note"), str)))
    lines += [f"Note: {t}" for t in notes] + ([""] if notes else [])


def _quirk_section(qid, q):
    """'## Qn: title': the texts, then the measurements (per run, then the audit's)."""
    lines = [f"## {qid}: {q['title']}", "",
             f"- Switch: {q['switch']}", f"- Code: {q['code']}", f"- Paper: {q['paper']}", ""]
    measured = measured_part(q)
    runs = measured.pop("runs", None)
    if isinstance(runs, dict) and len(runs) > 1:
        _side_by_side(lines, qid, runs)
    elif isinstance(runs, dict):
        for name, m in runs.items():
            lines += [f"### {qid} in run {name}", ""]
            _render(lines, _q8_view(m) if qid == "Q8" else m)
            if qid == "Q8":
                _render_schedule(lines, m)
    if measured:
        _render(lines, _q8_view(measured) if qid == "Q8" else measured)
        if qid == "Q8":
            _render_schedule(lines, measured)
    return lines


def render_markdown(rep):
    """report.md text of a report object: runs, audit setup, then one section per quirk."""
    lines = ["# DGG discrepancy report", ""]
    if rep.get("summary"):
        lines += ["## Summary", ""] + [f"- {ln}" for ln in summary_lines(rep["summary"])] + [""]
    lines += findings_section(rep)
    if len(rep.get("runs") or []) > 1:
        lines += comparison_section(rep)
    lines += [_INTRO, ""]
    if rep.get("sweep"):
        lines += effects_section(rep["sweep"])
    if rep.get("runs"):
        lines += _warnings_section(rep["runs"]) + _runs_section(rep["runs"])
    if rep.get("setup"):
        lines += _setup_section(rep["setup"])
    for qid in QUIRK_IDS:
        lines += _quirk_section(qid, rep.get(qid, QUIRKS[qid]))
    return "\n".join(lines).rstrip() + "\n"
