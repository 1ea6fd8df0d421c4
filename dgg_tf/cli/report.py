"""``python -m dgg_tf.report RUN_DIR [RUN_DIR ...] [--sweep DIR] [--out DIR]``: compare
finished runs of reproduce/mnist.py (final and best ACC/NMI side by side, combined
curves, and each run's stored audit) and, with --sweep, each quirk's effect on the final
result, written to a directory that is not one of the runs'."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from dgg_tf.core.rundir import CURVES, REPORT_JSON, REPORT_MD
from dgg_tf.report.document import summarize_run, write_report
from dgg_tf.report.markdown import fmt
from dgg_tf.report.runfiles import load_run, plot_curves
from dgg_tf.sweep.results import load_effects, protocol_line


def _run_holding(out, run_dirs):
    """The run directory that ``out`` is, or lies inside (after resolving links), if any."""
    target = os.path.realpath(out)
    for run_dir in run_dirs:
        run = os.path.realpath(run_dir)
        if os.path.commonpath([target, run]) == run:
            return run_dir
    return None


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m dgg_tf.report",
        description="Compare finished runs of reproduce/mnist.py: final and best ACC/NMI side "
                    "by side, combined curves, and each run's stored discrepancy audit.")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR")
    p.add_argument("--sweep", default=None, metavar="DIR",
                   help="a sweep directory of reproduce/sweep.py: each quirk's effect on "
                        "the final result, and a ranked summary at the top")
    p.add_argument("--out", default=None,
                   help="output directory (default runs/compare-<timestamp>); must not be "
                        "one of the runs' directories")
    return p.parse_args(argv)


def main(argv=None):
    """Write the comparison report of the runs given; 0 on success, 2 on a bad input."""
    args = _parse(argv)
    if not args.runs and not args.sweep:
        print("error: give RUN_DIR(s), --sweep DIR, or both", file=sys.stderr)
        return 2
    out = args.out or os.path.join(
        "runs", "compare-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    clash = _run_holding(out, args.runs)
    if clash is not None:
        print(f"error: --out {out} is run directory {clash} or lies inside it: writing "
              "there would overwrite that run's report; choose another directory",
              file=sys.stderr)
        return 2
    try:
        runs = [load_run(d) for d in args.runs]
        names = [r["name"] for r in runs]
        if len(set(names)) != len(names):
            for i, r in enumerate(runs):
                r["name"] = f"{i + 1}:{r['name']}"
        sweep = None
        if args.sweep:
            found, ranked = load_effects(args.sweep)
            sweep = (args.sweep, protocol_line(found["protocol"]), ranked)
        rep = write_report(out, None, runs, sweep)
        if runs:
            plot_curves(os.path.join(out, CURVES), runs)
    except (ValueError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in runs:
        s = summarize_run(r)
        fin = s.get("final") or {}
        print(f"{s['name']}: {s['epochs']} epochs, final ACC={fmt(fin.get('full_acc'))} "
              f"NMI={fmt(fin.get('full_nmi'))}")
    comp = rep.get("comparison") or {}
    for key in comp.get("differing_conditions", []):
        print(f"differs: {key}: " + ", ".join(f"{name}={value}" for name, value
                                              in comp["conditions"][key].items()))
    for warning in comp.get("warnings", []):
        if warning.startswith("DIFFERENT DATA"):
            print(f"WARNING: {warning}", file=sys.stderr)
    print(f"wrote {os.path.join(out, REPORT_MD)}, {REPORT_JSON}" + (f", {CURVES}" if runs else ""))
    return 0
