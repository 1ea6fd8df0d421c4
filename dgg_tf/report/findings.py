"""'## Findings at a glance': one table row per quirk Q1..Q12 (switch, the code's
setting, the paper's setting, the measured effect in one line), written from the report
object so that report.md leads with what was found. One small function per quirk turns
its measured dict into the line; a quirk without measurements says so in words."""
from __future__ import annotations

from dgg_tf.report.quirks import QUIRK_IDS, QUIRK_SWITCHES, QUIRKS, measured_part
from dgg_tf.report.switches import choices

NOT_MEASURED = "not measured in this report (no audit)"

#: Switch, code setting and paper setting of the quirks without a CHOICES switch.
_OTHER_SETTINGS = {
    "Q2": ("kmeans_n_init", "10 restarts", "not specified (scikit-learn >= 1.4: 1)"),
    "Q6": ("similarity=student_t", "TypeError (never ran)", "1/(1 + dist)"),
    "Q11": ("none", "fallback unreachable (NameError)", "layer-wise pretraining"),
    "Q12": ("none", "running predictions, NMI 'max'", "full pass over all samples"),
}


def n(v):
    """A number in 4 significant digits (the findings' format)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.4g}"


def settings(qid):
    """(switch, code's setting, paper's setting) of a quirk, short."""
    if qid in _OTHER_SETTINGS:
        return _OTHER_SETTINGS[qid]
    switch = QUIRK_SWITCHES[qid]
    values = choices(switch)
    return switch, str(values[0]), " / ".join(str(v) for v in values[1:])


def _q1(m):
    p = m["purity"]
    return (f"neighbour purity {n(p['random_top100'])} random from the top 100 vs "
            f"{n(p['nearest'])} nearest")


def _q2(m):
    r = m["by_restarts"]
    return (f"K-means ACC {n(r['n_init=1']['acc'])} with n_init=1 vs "
            f"{n(r['n_init=10']['acc'])} with n_init=10")


def _q3(m):
    g = m["metrics"]
    return (f"GMM-init ACC {n(g['no_pi']['acc'])} without pi vs {n(g['with_pi']['acc'])} "
            f"with pi (K-means {n(g['kmeans']['acc'])})")


def _q4(m):
    return (f"argmax of gamma agrees on {n(m['argmax_agreement'])} of samples (mean vs "
            f"sampled z); gradient cosine {n(m['gradient_cosine']['mean'])}")


def _q5(m):
    b = m["by_loss"]
    return (f"classifier ACC {n(b['double_softmax']['acc'])} with the double softmax vs "
            f"{n(b['cross_entropy']['acc'])} with cross-entropy")


def _q6(m):
    w = m["by_sigma_mode"]["code"]
    return (f"the original raises TypeError; the port's weights finite: "
            f"{'yes' if w['finite'] else 'no'}, median row sum {n(w['row_sum_median'])}")


def _q7(m):
    return (f"weights differ in {m['n_batches_with_different_weights']} of {m['n_batches']} "
            f"batches (similarity {m['configured_similarity']}); max |loss term change| "
            f"{n(m['loss_effect']['max_abs_term_change'])}")


def _q8(m):
    d = m["dgg"]
    first = d["first_decay_epoch"]
    return (f"first DGG decay at 0-based epoch {first['code']} (code) vs {first['nominal']} "
            f"(nominal); {d['epochs_differing_within_run']} of the run's {d['epochs']} "
            "epochs differ")


def _q9(m):
    return (f"max |pi diff| {n(m['max_abs_pi_diff'])} (code pc vs paper pi); gradient cosine "
            f"{n(m['gradient_cosine']['mean'])}")


def _q10(m):
    loss = m["loss"]
    return (f"loss {n(loss['code (1/2)'])} with 1/2 vs {n(loss['paper typo (1)'])} with 1; "
            f"gradient cosine {n(m['gradient_cosine']['mean'])}")


def _q11(m):
    w = m["weights"]
    origin = w.get("schedule") or w.get("source") or "unknown"
    return (f"nothing to measure (the original never ran it); weights used: "
            f"{str(w.get('path', '?')).rsplit('/', 1)[-1]} ({origin})")


def _q12(m):
    runs = m.get("running_vs_full_by_run") or {}
    if runs:
        return "; ".join(f"{name}: final ACC {n(r['final']['running_acc'])} running vs "
                         f"{n(r['final']['full_acc'])} full pass" for name, r in runs.items())
    a = m["full_pass_at_audit"]
    return f"full-pass ACC at the audit {n(a['acc'])}; no training epochs to compare"


LINES = {"Q1": _q1, "Q2": _q2, "Q3": _q3, "Q4": _q4, "Q5": _q5, "Q6": _q6, "Q7": _q7,
         "Q8": _q8, "Q9": _q9, "Q10": _q10, "Q11": _q11, "Q12": _q12}


def _sources(entry, qid):
    """[(run name or None, measured dict)]: the report's own audit, else each run's."""
    m = measured_part(entry)
    runs = m.pop("runs", None)
    m.pop("effect_on_final_result", None)
    if qid == "Q12" and isinstance(runs, dict) and not m.get("running_vs_full_by_run"):
        return list(runs.items())
    if m and (qid == "Q12" or set(m) - {"running_vs_full_by_run"}):
        return [(None, m)]
    return list(runs.items()) if isinstance(runs, dict) else []


def _line_of(fn, m):
    try:
        return fn(m) or None
    except (KeyError, TypeError, IndexError, ValueError, AttributeError):
        return None


def _effect(e):
    """The sweep's effect on the final result, one phrase."""
    lo, hi = e.get("acc_95_interval") or (None, None)
    return (f"sweep: {e.get('configuration')} vs {e.get('baseline')} final ACC "
            f"{e['acc_difference']:+.4f} [{n(lo)}, {n(hi)}] over {e.get('seeds')} seeds")


def measured_line(rep, qid):
    """The measured effect of quirk ``qid`` in one line (never empty)."""
    entry = rep.get(qid) or {}
    lines = [(name, _line_of(LINES[qid], m)) for name, m in _sources(entry, qid)]
    lines = [(name, t) for name, t in lines if t]
    if not lines:
        text = NOT_MEASURED
    elif len({t for _, t in lines}) == 1:
        text = lines[0][1]
    else:
        text = "; ".join(f"{name}: {t}" for name, t in lines)
    effect = entry.get("effect_on_final_result")
    if isinstance(effect, dict) and isinstance(effect.get("acc_difference"), (int, float)):
        text += "; " + _effect(effect)
    return text


def _cell(text):
    text = str(text).replace("|", "\\|").replace("\n", " ").strip()
    return text or "n/a"


def findings_rows(rep):
    """[(quirk, switch, code, paper, measured)] for Q1..Q12, every cell non-empty."""
    rows = []
    for qid in QUIRK_IDS:
        title = (rep.get(qid) or {}).get("title") or QUIRKS[qid]["title"]
        switch, code, paper = settings(qid)
        rows.append(tuple(_cell(c) for c in (f"{qid}: {title}", switch, code, paper,
                                             measured_line(rep, qid))))
    return rows


def findings_section(rep):
    """'## Findings at a glance' lines of report.md."""
    lines = ["## Findings at a glance", "",
             "| quirk | switch | code | paper | measured |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in findings_rows(rep)]
    return lines + ["", "Details of each quirk in its section below; numbers in "
                    "`report.json` under the same keys.", ""]
