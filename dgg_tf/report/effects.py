"""The report's "Effect on the final result": from a sweep's ranked effects
(``sweep.results.load_effects``, read by the comparison command), per quirk whose
switch was flipped alone, the paired difference of final ACC and NMI to the baseline,
with its 95% interval and protocol, and a ranked summary for the top of report.md."""
from __future__ import annotations

import os

from dgg_tf.core.console import signed
from dgg_tf.report.quirks import QUIRK_SWITCHES


def _quirk_of(name):
    """The quirk id of a sweep configuration ``switch=value``, or None."""
    switch = name.split("=")[0]
    return next((q for q, s in QUIRK_SWITCHES.items() if s == switch), None)


def _entry(name, e, protocol):
    acc, nmi = e["full_acc"], e["full_nmi"]
    return {"configuration": name, "baseline": e["baseline"], "protocol": protocol,
            "acc_difference": acc["difference"], "acc_95_interval": [acc["low"], acc["high"]],
            "nmi_difference": nmi["difference"], "nmi_95_interval": [nmi["low"], nmi["high"]],
            "seeds": acc["n"], "moves_acc": e["moves"]}


def sweep_effects(sweep_dir, protocol, ranked):
    """{"sweep": summary with the ranked list, qid: effect entry} of the sweep in
    ``sweep_dir``, run under ``protocol`` (one line), with its ``ranked`` effects."""
    # the directory as given: a committed report names no machine's path
    out = {"sweep": {"dir": os.fspath(sweep_dir), "protocol": protocol, "ranked": []}}
    for name, e in ranked.items():
        entry = _entry(name, e, protocol)
        out["sweep"]["ranked"].append({**entry, "quirk": _quirk_of(name)})
        qid = _quirk_of(name)
        if qid is not None and qid not in out:
            out[qid] = entry
    return out



def effects_section(summary):
    """'## Effect on the final result': the ranked switches, largest ACC change first."""
    lines = ["## Effect on the final result", "", f"From the sweep in `{summary['dir']}` "
             f"({summary['protocol']}). Each configuration against its baseline, paired by "
             "seed; 95% bootstrap interval over the seeds.", ""]
    for i, r in enumerate(summary["ranked"], 1):
        tag = f" ({r['quirk']})" if r.get("quirk") else ""
        lo, hi = r["acc_95_interval"]
        nlo, nhi = r["nmi_95_interval"]
        lines.append(f"{i}. {r['configuration']}{tag} vs {r['baseline']}: ACC "
                     f"{signed(r['acc_difference'])} [{signed(lo)}, {signed(hi)}], NMI "
                     f"{signed(r['nmi_difference'])} [{signed(nlo)}, {signed(nhi)}], {r['seeds']} seeds"
                     + (" — moves ACC" if r["moves_acc"] else ""))
    return lines + [""]
