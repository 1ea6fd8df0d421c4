"""The GPU check's scripts (benchmarks/device_check.sh, device_prepare.sh) parse, and
its summary computes what it says from a sweep directory's histories."""
import csv
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


@pytest.mark.parametrize("script", ["device_check.sh", "device_prepare.sh", "full_cell.sh"])
def test_shell_scripts_parse(script):
    assert subprocess.run(["bash", "-n", os.path.join(BENCH, script)]).returncode == 0


def test_summary_of_a_sweep(tmp_path):
    """2 cells (3 and 1 epochs) in 120 s: 2 epochs a minute together; one process at a
    0.01 s all-in step over 10 steps an epoch makes 600 a minute; cells.csv has a row
    per epoch."""
    for cell, accs in (("code/seed-0", [0.2, 0.3, 0.4]), ("paper/seed-1", [0.5])):
        d = tmp_path / "sweep" / "runs" / cell
        d.mkdir(parents=True)
        with open(d / "history.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "full_acc", "seconds"])
            w.writerows([i + 1, a, 30] for i, a in enumerate(accs))
    step = tmp_path / "step_time.txt"
    step.write_text("jax: {}\n  mixed_bfloat16: step 0.0090 s; all-in 0.0100 s (ratio 1.1)\n")
    cells = tmp_path / "cells.csv"
    out = subprocess.run([sys.executable, os.path.join(BENCH, "device_summary.py"),
                          str(tmp_path / "sweep"), "120", str(step), str(cells), "10"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "code/seed-0: 3 epochs; ACC per epoch: 0.200 0.300 0.400" in out.stdout
    assert "2 cells, 4 epochs in 120 s (start-up included): 2.00 epochs per minute" in out.stdout
    assert "one process at the all-in mixed_bfloat16 step: 600.00 epochs per minute" in out.stdout
    assert "(3000 epochs) at 2.00 epochs per minute: 1500 min" in out.stdout
    rows = list(csv.DictReader(open(cells)))
    assert len(rows) == 4 and rows[-1] == {"cell": "paper/seed-1", "epoch": "1",
                                           "full_acc": "0.5", "seconds": "30"}
