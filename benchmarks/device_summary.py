"""What device_check.sh did, from whatever exists: each phase's outcome, the device, the
step times, and each sweep cell's state (finished, failed with its error, stopped, or
still running), its epochs and ACC per epoch as far as its history.csv got; then the
epochs per minute of all cells together over the sweep's wall time, against one
process's rate from the all-in step (step_time.txt), and what the whole `full`
protocol (10 cells x 300 epochs) would then take. Standard library only (it runs every
few seconds during the sweep, and after a failure of anything else).

    python benchmarks/device_summary.py SWEEP_DIR WALL_SECONDS STEP_TIME_TXT CELLS_CSV \
        [STEPS_PER_EPOCH] [--precision P] [--phases PHASES_TXT] [--device DEVICE_TXT] \
        [--sweep-log SWEEP_LOG] [--state TEXT] [--final]

STEPS_PER_EPOCH: default 700 (full MNIST in batches of 100). --precision: the sweep's
(default mixed_bfloat16), whose all-in step gives one process's rate. --phases: lines of
"NAME<TAB>what happened", printed first. --final: cells that neither finished nor
failed are reported as stopped, not running. Every input may be missing or cut short.
"""
import argparse
import csv
import glob
import json
import os
import re
import sys

FULL_EPOCHS = 10 * 300           # code and paper x 5 seeds x 300 epochs


def _read(path):
    """The text of a file, or None."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except (OSError, TypeError):
        return None


def history(path):
    """The rows of a history.csv as far as they can be read: a row cut short by a write
    in progress, or with a non-numeric epoch, ends the list."""
    text = _read(path)
    rows = []
    if not text:
        return rows
    for r in csv.DictReader(text.splitlines()):
        if None in r or None in r.values():          # fewer or more fields than the header
            break
        try:
            int(r.get("epoch") or "")
            if r.get("full_acc") not in (None, ""):
                float(r["full_acc"])
        except ValueError:
            break
        rows.append(r)
    return rows


def _plan_cells(sweep_dir):
    """[(configuration, seed)] and the epochs of each cell from plan.json, or from the
    run and log folders where there is no readable plan."""
    try:
        plan = json.loads(_read(os.path.join(sweep_dir, "plan.json")) or "")
        cells = [(name, int(s)) for name, c in plan["configs"].items() for s in c["seeds"]]
        return sorted(cells, key=lambda c: (c[1], c[0])), plan["protocol"].get("epochs")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    found = set()
    for d in glob.glob(os.path.join(sweep_dir, "runs", "*", "seed-*")):
        found.add((os.path.basename(os.path.dirname(d)), int(d.rsplit("-", 1)[1])))
    for log in glob.glob(os.path.join(sweep_dir, "logs", "*-seed-*.log")):
        m = re.match(r"(.+)-seed-(\d+)\.log$", os.path.basename(log))
        if m:
            found.add((m.group(1), int(m.group(2))))
    return sorted(found, key=lambda c: (c[1], c[0])), None


def cells(sweep_dir, final=False):
    """{cell name: {rows, state, epochs, step_estimate}} of every cell of the sweep."""
    out = {}
    cell_list, epochs = _plan_cells(sweep_dir)
    for name, seed in cell_list:
        run_dir = os.path.join(sweep_dir, "runs", name, f"seed-{seed}")
        rows = history(os.path.join(run_dir, "history.csv"))
        log = _read(os.path.join(sweep_dir, "logs", f"{name}-seed-{seed}.log"))
        lines = [line.strip() for line in (log or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        stops = [line for line in lines if line.startswith(("stopped by SIGTERM", "interrupted"))]
        try:
            finished = (json.loads(_read(os.path.join(run_dir, "config.json")) or "")
                        .get("finished") or {}).get("epochs")
        except (ValueError, AttributeError):
            finished = None
        if finished is not None and (epochs is None or finished == epochs):
            state = "finished"
        elif errors:
            state = "FAILED: " + errors[-1][len("error:"):].strip()
        elif stops:
            state = "stopped: " + stops[-1].split(";")[0]
        elif log is None and not rows:
            state = "not started"
        elif final:             # killed (SIGKILL after the grace period) or crashed
            state = "ended without a stop message (" + (
                f"its log ends: {lines[-1][:120]})" if lines else "its log is empty)")
        else:
            state = "running"
        m = None
        for line in lines:
            m = re.search(r"estimate from the first steps: ([0-9.]+) s a step", line) or m
        out[f"{name}/seed-{seed}"] = {"rows": rows, "state": state, "epochs": epochs,
                                      "step_estimate": float(m.group(1)) if m else None}
    return out


def one_process_rate(step_time_txt, steps_per_epoch, precision="mixed_bfloat16"):
    """Epochs per minute of one process from the all-in step of ``precision``, or None."""
    m = re.search(rf"{re.escape(precision)}: step [0-9.]+ s; all-in ([0-9.]+) s",
                  _read(step_time_txt) or "")
    return 60.0 / (float(m.group(1)) * steps_per_epoch) if m else None


def write_cells_csv(found, cells_csv):
    """One row per epoch of every cell, and one for a cell without an epoch (rewritten
    whole under a name of this process, then renamed into place)."""
    tmp = f"{cells_csv}.{os.getpid()}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cell", "epoch", "full_acc", "seconds", "state"])
        for name, cell in found.items():
            for r in cell["rows"]:
                writer.writerow([name, r["epoch"], r.get("full_acc"), r.get("seconds"),
                                 cell["state"]])
            if not cell["rows"]:
                writer.writerow([name, 0, "", "", cell["state"]])
    os.replace(tmp, cells_csv)


def report(args):
    """The summary's lines."""
    say = []
    if args.state:
        say.append(args.state)
    phases = _read(args.phases)
    if phases is not None:
        say.append("phases:")
        say += [f"  {'  '.join(p.split(chr(9)))}" for p in phases.splitlines() if p.strip()]
    device = _read(args.device)
    if device is not None:
        say += [f"device: {line}" for line in device.splitlines()
                if line.strip() and "Warning" not in line][:4]
    steps = _read(args.step_time)
    if steps is None:
        say.append("step time: no step_time.txt")
    else:
        lines = [line for line in steps.splitlines()
                 if re.match(r"\s+\S+: step [0-9.]+ s", line)]
        say += [f"step time: {line.strip()}" for line in lines] or ["step time: no figures "
                                                                    "(see step_time.txt)"]
    if not args.sweep_dir or not os.path.isdir(args.sweep_dir):
        say.append("sweep: not started")
        return say
    found = cells(args.sweep_dir, final=args.final)
    write_cells_csv(found, args.cells_csv)
    for name, cell in found.items():
        rows = cell["rows"]
        accs = " ".join(f"{float(r['full_acc']):.3f}" for r in rows if r.get("full_acc"))
        of = f"/{cell['epochs']}" if cell["epochs"] else ""
        est = (f"; first steps {cell['step_estimate']:.3f} s a step"
               if cell["step_estimate"] else "")
        say.append(f"{name}: {cell['state']}; {len(rows)}{of} epochs{est}"
                   + (f"; ACC per epoch: {accs}" if accs else ""))
    wall = float(args.wall or 0)
    epochs = sum(len(c["rows"]) for c in found.values())
    if not found:
        log = [line for line in (_read(args.sweep_log) or "").splitlines() if line.strip()]
        say.append("sweep: no cell started" + (f"; sweep.log ends: {log[-1][:200]}"
                                               if log else ""))
    if not epochs or wall <= 0:
        if found:
            say.append(f"no cell finished an epoch in {wall:.0f} s")
        return say
    rate = 60.0 * epochs / wall
    say.append(f"{len(found)} cells, {epochs} epochs in {wall:.0f} s (start-up included): "
               f"{rate:.2f} epochs per minute together")
    single = one_process_rate(args.step_time, int(args.steps_per_epoch), args.precision)
    if single:
        say.append(f"one process at the all-in {args.precision} step: {single:.2f} epochs "
                   f"per minute; {len(found)} processes together: {rate / single:.2f} x that")
    say.append(f"the full protocol ({FULL_EPOCHS} epochs) at {rate:.2f} epochs per minute: "
               f"{FULL_EPOCHS / rate:.0f} min")
    return say


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweep_dir")
    p.add_argument("wall", help="seconds the sweep ran (0: not run)")
    p.add_argument("step_time")
    p.add_argument("cells_csv")
    p.add_argument("steps_per_epoch", nargs="?", default=700, type=int)
    p.add_argument("--precision", default="mixed_bfloat16")
    p.add_argument("--phases", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--sweep-log", default=None)
    p.add_argument("--state", default=None, help="a first line (when, what stopped it)")
    p.add_argument("--final", action="store_true")
    args = p.parse_args(argv)
    print("\n".join(report(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
