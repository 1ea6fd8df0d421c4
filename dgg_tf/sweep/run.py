"""Running a sweep: named configurations x seeds, each cell an ordinary run directory of
``pipeline.run_dgg`` (audit off) under one sweep directory:

    SWEEP/plan.json            protocol, configurations, seeds, weights, neighbours
    SWEEP/inputs.npz           the data, labels and neighbour tables every cell uses
    SWEEP/runs/NAME/seed-S/    one run directory per cell
    SWEEP/logs/NAME-seed-S.log each cell's console output
    SWEEP/sweep.json, sweep.md, sweep.png, sweep-curves.png   (``summary``)

Every configuration is the code preset plus overrides: ``code``; ``paper``; and one
switch flipped at a time (``FLIPS``). A cell that finished is skipped, a killed one is
resumed from its last checkpoint (``run_dgg(resume=True)``). Cells run in
subprocesses (``python -m dgg_tf.sweep SWEEP NAME SEED``), ``jobs`` at a time.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from ..commands import run_main
from ..console import duration, number, quiet_tensorflow
from ..pipeline import run_dgg
from .cells import PLAN, cell_config, cell_dir, cell_result, cell_state, load_inputs, read_json
from .summary import write_summary


# ---------------------------------------------------------------- one cell
def run_cell(sweep_dir, name, seed, verbose=2):
    """Run (or resume) one cell in this process; returns its run directory."""
    plan = read_json(os.path.join(sweep_dir, PLAN))
    if name not in plan["configs"]:
        raise ValueError(f"configuration {name!r} is not in {sweep_dir}/{PLAN}")
    config = cell_config(plan, name, seed)
    path = cell_dir(sweep_dir, name, seed)
    state = cell_state(path, config.epochs)
    if state == "done":
        return path
    x, y, tables = load_inputs(sweep_dir)
    if config.neighbor_selection not in tables:
        raise ValueError(f"the sweep's inputs hold no {config.neighbor_selection} table")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    info = {"variant": name, "sweep": os.path.abspath(sweep_dir), "data": plan["protocol"]["data"],
            "command": f"python -m dgg_tf.sweep {sweep_dir} {name} {seed}"}
    run_dgg(config, x, y, neighbors=tables, weights=plan["weights"], workdir=path,
            resume=state == "resume", verbose=verbose, audit=False, info=info)
    return path


# ---------------------------------------------------------------- the whole sweep
def _cells(plan):
    """Every (configuration, seed), seed by seed: the first seed of every configuration
    finishes before any second seed, so an interrupted sweep has seen every configuration."""
    cells = [(name, seed) for name, c in plan["configs"].items() for seed in c["seeds"]]
    return sorted(cells, key=lambda cell: cell[1])


def _spawn(sweep_dir, name, seed):
    """Start one cell as a subprocess, its output appended to logs/NAME-seed-S.log."""
    os.makedirs(os.path.join(sweep_dir, "logs"), exist_ok=True)
    log = open(os.path.join(sweep_dir, "logs", f"{name}-seed-{seed}.log"), "a")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.Popen([sys.executable, "-m", "dgg_tf.sweep", os.path.abspath(sweep_dir),
                             name, str(seed)], stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return proc



class _Progress:
    """Counts the finished cells and prints one line per cell with the sweep's ETA."""

    def __init__(self, sweep_dir, total, done, jobs, say):
        self.sweep_dir, self.total, self.done, self.jobs, self.say = \
            sweep_dir, total, done, jobs, say
        self.failed, self.walls = 0, []

    def finished(self, name, seed, status, t0, left):
        self.done += 1
        self.failed += status != 0
        self.walls.append(time.time() - t0)
        if status == 0:
            r = cell_result(self.sweep_dir, name, seed)
            what = (f"ACC {number(r['full_acc'])} NMI {number(r['full_nmi'])} (classifier ACC "
                    f"{number(r['classifier_acc'])})")
        else:
            what = f"FAILED (exit {status}; see logs/{name}-seed-{seed}.log)"
        eta = sum(self.walls) / len(self.walls) * left / max(self.jobs, 1)
        self.say(f"[{self.done}/{self.total}] {name} seed {seed}: {what} in "
                 f"{self.walls[-1] / 60:.1f} min; sweep ETA {duration(eta)}")


def _run_parallel(sweep_dir, todo, jobs, progress):
    """Run the cells ``todo`` as subprocesses, ``jobs`` at a time."""
    queue, running = list(todo), {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                name, seed = queue.pop(0)
                running[(name, seed)] = (_spawn(sweep_dir, name, seed), time.time())
            ended = [k for k, (proc, _) in running.items() if proc.poll() is not None]
            if not ended:
                time.sleep(1.0)
            for key in ended:
                proc, t0 = running.pop(key)
                progress.finished(*key, proc.returncode, t0, len(queue) + len(running))
    finally:
        for proc, _ in running.values():     # interrupted: the cells resume next time
            proc.terminate()
            proc.wait()


def run_sweep(sweep_dir, jobs=1, in_process=False, say=print):
    """Run every cell of the prepared sweep not yet finished (``jobs`` subprocesses at a
    time; ``in_process``: one after another in this process, for tests), then write
    sweep.json, sweep.md and sweep.png. Returns the number of failed cells."""
    plan = read_json(os.path.join(sweep_dir, PLAN))
    cells = _cells(plan)
    todo = [(n, s) for n, s in cells
            if cell_state(cell_dir(sweep_dir, n, s), plan["protocol"]["epochs"]) != "done"]
    say(f"sweep {sweep_dir}: {len(cells)} cells, {len(cells) - len(todo)} finished, "
        f"{len(todo)} to run ({'in this process' if in_process else f'{jobs} at a time'})")
    progress = _Progress(sweep_dir, len(cells), len(cells) - len(todo), jobs, say)
    if in_process:
        for i, (name, seed) in enumerate(todo):
            t0 = time.time()
            run_cell(sweep_dir, name, seed, verbose=0)
            progress.finished(name, seed, 0, t0, len(todo) - i - 1)
    else:
        _run_parallel(sweep_dir, todo, jobs, progress)
    write_summary(sweep_dir)
    return progress.failed


def main(argv=None):
    """``python -m dgg_tf.sweep SWEEP NAME SEED``: run one cell (the sweep's subprocess)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m dgg_tf.sweep SWEEP_DIR NAME SEED", file=sys.stderr)
        return 2
    quiet_tensorflow()
    return run_main(lambda: (run_cell(argv[0], argv[1], int(argv[2])), 0)[1])

