"""The GPU check's scripts (benchmarks/device_check.sh, device_prepare.sh) parse; its
summary computes what it says from a sweep directory's histories and copes with what a
stopped check leaves; and the check, run with a stand-in python3 (no JAX, no Keras),
writes its summary whatever fails or stops it, and leaves no process behind."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

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
    assert "code/seed-0: running; 3 epochs; ACC per epoch: 0.200 0.300 0.400" in out.stdout
    assert "2 cells, 4 epochs in 120 s (start-up included): 2.00 epochs per minute" in out.stdout
    assert "one process at the all-in mixed_bfloat16 step: 600.00 epochs per minute" in out.stdout
    assert "(3000 epochs) at 2.00 epochs per minute: 1500 min" in out.stdout
    rows = list(csv.DictReader(open(cells)))
    assert len(rows) == 4 and rows[-1] == {"cell": "paper/seed-1", "epoch": "1",
                                           "full_acc": "0.5", "seconds": "30",
                                           "state": "running"}


def _summary(*args):
    out = subprocess.run([sys.executable, os.path.join(BENCH, "device_summary.py"), *map(str, args)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_summary_of_what_a_stopped_check_leaves(tmp_path):
    """No sweep and no step_time.txt; then a planned sweep of 3 cells: one finished, one
    failed at step 2 with no epoch, one stopped mid-epoch 3 whose history.csv has 2 rows
    and a cut-short third; the one process rate comes from the sweep's precision."""
    cells = tmp_path / "cells.csv"
    phases = tmp_path / "phases.txt"
    phases.write_text("step_time\texit 1 after 3 s (bound 150 s)\n")
    out = _summary(tmp_path / "none", 0, tmp_path / "none.txt", cells, "--phases", phases)
    assert "step_time  exit 1 after 3 s (bound 150 s)" in out
    assert "step time: no step_time.txt" in out and "sweep: not started" in out
    sweep = tmp_path / "sweep"
    (sweep / "logs").mkdir(parents=True)
    out = _summary(sweep, 30, tmp_path / "none.txt", cells, "--final")
    assert "sweep: no cell started" in out
    (sweep / "plan.json").write_text(json.dumps(
        {"protocol": {"epochs": 3}, "configs": {"code": {"seeds": [0, 1]}, "paper": {"seeds": [0]}}}))
    for cell, text in (("code/seed-0", "1,0.5,2\n2,0.6,2\n3,0.7,2\n"),
                       ("code/seed-1", "1,0.25,2\n2,0.3,2\n3,0.")):
        (sweep / "runs" / cell).mkdir(parents=True)
        (sweep / "runs" / cell / "history.csv").write_text("epoch,full_acc,seconds\n" + text)
    (sweep / "runs" / "code" / "seed-0" / "config.json").write_text('{"finished": {"epochs": 3}}')
    (sweep / "logs" / "paper-seed-0.log").write_text(
        "DGG training: started\nerror: loss is not finite at epoch 1, batch 2/10; "
        "not finite: reconstruction; training stopped\n")
    (sweep / "logs" / "code-seed-1.log").write_text(
        "estimate from the first steps: 0.250 s a step, about 2.5 s\n"
        "\nstopped by SIGTERM; continue with the same command plus --resume\n")
    step = tmp_path / "step_time.txt"
    step.write_text("  float32: step 0.0100 s; all-in 0.0200 s (ratio 2.0)\n"
                    "  mixed_bfloat16: step 0.0090 s; all-in 0.0100 s (ratio 1.1)\n")
    out = _summary(sweep, 60, step, cells, 10, "--precision", "float32", "--final")
    assert "code/seed-0: finished; 3/3 epochs; ACC per epoch: 0.500 0.600 0.700" in out
    assert ("code/seed-1: stopped: stopped by SIGTERM; 2/3 epochs; first steps 0.250 s a "
            "step; ACC per epoch: 0.250 0.300") in out
    assert ("paper/seed-0: FAILED: loss is not finite at epoch 1, batch 2/10; not finite: "
            "reconstruction; training stopped; 0/3 epochs") in out
    assert "3 cells, 5 epochs in 60 s (start-up included): 5.00 epochs per minute" in out
    assert "one process at the all-in float32 step: 300.00 epochs per minute" in out
    rows = list(csv.DictReader(open(cells)))
    assert [(r["cell"], r["epoch"]) for r in rows] == [
        ("code/seed-0", "1"), ("code/seed-0", "2"), ("code/seed-0", "3"),     # seed by seed,
        ("paper/seed-0", "0"), ("code/seed-1", "1"), ("code/seed-1", "2")]    # as the sweep runs


# A stand-in python3 for device_check.sh: the summary (and one arithmetic) run on the
# real interpreter; keras "imports"; step_time fails; the sweep writes a plan, one cell's
# history and a failed cell's log, starts a "cell" in a process group of its own that
# ignores SIGTERM (the pid in $STUB_PIDFILE), and sleeps.
STUB = textwrap.dedent("""\
    #!/usr/bin/env bash
    case "$*" in
      *device_summary.py*|*"print(round("*) exec "$STUB_REAL_PYTHON" "$@" ;;
      *"import keras"*) exit 0 ;;
      *step_time.py*) echo "Traceback: a failing phase" >&2; exit 1 ;;
      *sweep.py*)
        out=; prev=
        for a in "$@"; do [ "$prev" = --out ] && out=$a; prev=$a; done
        echo "stub sweep.py: $*"
        mkdir -p "$out/runs/code/seed-0" "$out/logs"
        echo '{"protocol": {"epochs": 3}, "configs": {"code": {"seeds": [0]}, "paper": {"seeds": [0]}}}' > "$out/plan.json"
        printf 'epoch,full_acc,seconds\\n1,0.5,2\\n' > "$out/runs/code/seed-0/history.csv"
        echo "DGG training: started" > "$out/logs/code-seed-0.log"
        echo "error: loss is not finite at epoch 1, batch 2/10" > "$out/logs/paper-seed-0.log"
        "$STUB_REAL_PYTHON" -c 'import os, signal, sys, time; os.setpgid(0, 0); signal.signal(signal.SIGTERM, signal.SIG_IGN); open(sys.argv[1], "w").write(str(os.getpid())); time.sleep(120)' "$STUB_PIDFILE" &
        exec sleep 120 ;;
      *) echo "stub python3: $*" ;;
    esac
    """)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not all(map(shutil.which, ("bash", "setsid", "timeout", "tail")))
                    or not os.path.isdir("/proc"), reason="needs bash, util-linux, coreutils, /proc")
@pytest.mark.parametrize("how", ["budget", "outer SIGTERM"])
def test_check_always_leaves_its_summary(tmp_path, how):
    """A failing phase (step_time), a failed cell, a sweep stopped at the end of the
    budget or by a SIGTERM to the whole check, and a cell that ignores SIGTERM in a
    process group of its own: summary.txt and cells.csv are there, say so, and nothing
    is left running; $OUT holds at most 8 files, none in a folder."""
    (tmp_path / "bin").mkdir()
    stub = tmp_path / "bin" / "python3"
    stub.write_text(STUB)
    stub.chmod(0o755)
    (tmp_path / "mnist").mkdir()
    out, pidfile = tmp_path / "out", tmp_path / "cell.pid"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "STUB_REAL_PYTHON": sys.executable, "STUB_PIDFILE": str(pidfile),
           "OUT": str(out), "DGG_MNIST": str(tmp_path / "mnist"),
           "PARITY_SCRIPT": str(tmp_path / "parity.py"), "GRACE": "2", "KILL_AFTER": "1",
           "SIG_GRACE": "1", "RESERVE": "2", "MIN_SWEEP": "2",
           "BUDGET": "16" if how == "budget" else "100"}
    if how == "budget":        # a parity script that writes no --out: its output is kept
        (tmp_path / "parity.py").write_text("")
    t0 = time.time()
    proc = subprocess.Popen(["bash", os.path.join(BENCH, "device_check.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if how != "budget":
        while not pidfile.exists() and time.time() - t0 < 20:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
    printed = proc.communicate(timeout=40)[0]
    assert proc.returncode == (1 if how == "budget" else 143), printed
    summary = (out / "summary.txt").read_text()
    assert summary in printed
    state = "finished" if how == "budget" else "stopped by SIGTERM"
    assert summary.startswith(f"device check: {state} at "), summary
    assert "step_time  exit 1 after" in summary
    assert ("parity  ok after" if how == "budget" else "parity  script not present") in summary
    sweep = "stopped at its bound" if how == "budget" else "cut short at"
    assert f"  sweep  {sweep}" in summary, summary
    assert "paper/seed-0: FAILED: loss is not finite at epoch 1, batch 2/10; 0/3 epochs" in summary
    assert "code/seed-0: ended without a stop message (its log ends: DGG training: started); " \
           "1/3 epochs; ACC per epoch: 0.500" in summary
    assert "killing what is left of session" in printed
    assert not _alive(int(pidfile.read_text()))
    files = sorted(os.listdir(out))
    assert files == ["cells.csv", "device.txt", "epsilon.txt"] + ["parity.txt"] * (
        how == "budget") + ["step_time.txt", "summary.txt", "sweep.log"]
    assert "epsilon  ok after" in summary
    assert "--cells-per-program 5 --jobs 2 --checkpoint-every 10" in (out / "sweep.log").read_text()    # programs
    if how == "budget":
        assert "stub python3: " in (out / "parity.txt").read_text()
    assert time.time() - t0 < 30
