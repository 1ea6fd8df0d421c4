"""What device_check.sh's sweep phase did: each cell's epochs and ACC per epoch, the
epochs per minute of all cells together over the phase's wall time, against one
process's rate from the all-in step (step_time.txt), and what the whole `full`
protocol (10 cells x 300 epochs) would then take.

    python benchmarks/device_summary.py SWEEP_DIR WALL_SECONDS STEP_TIME_TXT CELLS_CSV \
        [STEPS_PER_EPOCH]       (default 700: full MNIST in batches of 100)
"""
import csv
import glob
import os
import re
import sys

FULL_EPOCHS = 10 * 300           # code and paper x 5 seeds x 300 epochs


def cells(sweep_dir):
    """{cell name: history rows} of every cell that finished at least one epoch."""
    out = {}
    for path in sorted(glob.glob(os.path.join(sweep_dir, "runs", "*", "seed-*", "history.csv"))):
        seed_dir = os.path.dirname(path)
        name = f"{os.path.basename(os.path.dirname(seed_dir))}/{os.path.basename(seed_dir)}"
        with open(path) as f:
            out[name] = list(csv.DictReader(f))
    return out


def one_process_rate(step_time_txt, steps_per_epoch):
    """Epochs per minute of one process from the mixed_bfloat16 all-in step, or None."""
    try:
        text = open(step_time_txt).read()
    except OSError:
        return None
    m = re.search(r"mixed_bfloat16: step [0-9.]+ s; all-in ([0-9.]+) s", text)
    return 60.0 / (float(m.group(1)) * steps_per_epoch) if m else None


def main(sweep_dir, wall, step_time_txt, cells_csv, steps_per_epoch=700):
    wall = float(wall)
    found = cells(sweep_dir)
    with open(cells_csv + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["cell", "epoch", "full_acc", "seconds"])
        for name, rows in found.items():
            for r in rows:
                writer.writerow([name, r["epoch"], r.get("full_acc"), r.get("seconds")])
    os.replace(cells_csv + ".tmp", cells_csv)
    epochs = sum(len(rows) for rows in found.values())
    for name, rows in found.items():
        accs = " ".join(f"{float(r['full_acc']):.3f}" for r in rows if r.get("full_acc"))
        print(f"{name}: {len(rows)} epochs; ACC per epoch: {accs}")
    if not epochs:
        print(f"no cell finished an epoch in {wall:.0f} s (see sweep.log)")
        return 0
    rate = 60.0 * epochs / wall
    print(f"{len(found)} cells, {epochs} epochs in {wall:.0f} s (start-up included): "
          f"{rate:.2f} epochs per minute together")
    single = one_process_rate(step_time_txt, int(steps_per_epoch))
    if single:
        print(f"one process at the all-in mixed_bfloat16 step: {single:.2f} epochs per "
              f"minute; {len(found)} processes together: {rate / single:.2f} x that")
    print(f"the full protocol ({FULL_EPOCHS} epochs) at {rate:.2f} epochs per minute: "
          f"{FULL_EPOCHS / rate:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
