"""Running a sweep: named configurations x seeds, each cell an ordinary run directory of
``pipeline.run_dgg`` (audit off) under one sweep directory:

    SWEEP/plan.json            protocol, configurations, seeds, weights, neighbours
    SWEEP/inputs.npz           the data, labels and neighbour tables every cell uses
    SWEEP/runs/NAME/seed-S/    one run directory per cell
    SWEEP/logs/NAME-seed-S.log each cell's console output
    SWEEP/jax-cache/           on JAX, the programs the cells compiled (``cell_env``)
    SWEEP/sweep.json, sweep.md, sweep.png, sweep-curves.png   (``summary``)

Every configuration is the code preset plus overrides: ``code``; ``paper``; and one
switch flipped at a time (``FLIPS``). A cell that finished is skipped, a killed one is
resumed from its last checkpoint (``run_dgg(resume=True)``). Cells run in
subprocesses (``python -m dgg_tf.sweep SWEEP NAME SEED``), ``jobs`` at a time; with
``cells_per_program`` N, up to N cells of one configuration run together in one
subprocess (``python -m dgg_tf.sweep SWEEP --program NAME:SEED,...``, ``sweep.programs``:
one vmapped program on JAX), with the starts computed once in SWEEP/starts/.

Stopping: SIGTERM or Ctrl-C to the sweep (alone or with its process group) is passed
to every running cell, which abandons its epoch, keeps its last checkpoint and releases
its lock; cells still running after ``STOP_GRACE_SECONDS`` are killed, and a second
signal kills them at once. The sweep then writes its summary of what has finished and
raises the stop. Each cell runs in its own session, so that only the sweep signals it,
once, and stops by itself when the sweep is gone, even after SIGKILL
(``stopping.watch_parent``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from dgg_tf.api.pipeline import run_dgg
from dgg_tf.backend.startup import quiet_tensorflow, shared_jax_cache
from dgg_tf.cli.commands import run_main
from dgg_tf.core import stopping
from dgg_tf.core.console import duration, number
from dgg_tf.sweep.cells import (PLAN, SWEEP_RESUMES, cell_config, cell_dir, cell_result, cell_state, load_inputs,
                                read_json)
from dgg_tf.sweep.curves import cell_curve
from dgg_tf.sweep.programs import program_units, run_program, unit_name
from dgg_tf.sweep.summary import write_summary

#: Seconds a stopped sweep waits for its cells to save and exit before it kills them
#: (a cell stops after its current batch, or once a long native call, such as an XLA
#: compile, returns).
STOP_GRACE_SECONDS = 20.0


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


def cell_env(sweep_dir):
    """The environment of a cell's (or program's) process: this checkout first on the
    path, TensorFlow's start-up lines off, the sweep's PID to watch, and on JAX one
    compilation cache for the whole sweep, SWEEP/jax-cache (JAX's persistent cache,
    unless JAX_COMPILATION_CACHE_DIR is set): every cell compiles the same programs, so
    the cells after the first, and every resume, load them instead of compiling them
    again; locked with filelock installed (``startup.shared_jax_cache``). A cached program
    is the executable XLA compiled: the same numbers."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    shared_jax_cache(env, os.path.join(os.path.abspath(sweep_dir), "jax-cache"))
    env[stopping.PARENT_ENV] = str(os.getpid())
    return env


def _spawn(sweep_dir, unit, programs=False, checkpoint_every=1):
    """Start one cell (or, with ``programs``, the cells of ``unit`` as one program,
    ``sweep.programs``) as a subprocess, its output appended to logs/NAME-seed-S.log
    (logs/program-....log). It runs in a session of its own (a signal to the sweep's
    process group reaches the sweep, which passes it on once) and watches the sweep
    (``stopping.PARENT_ENV``)."""
    os.makedirs(os.path.join(sweep_dir, "logs"), exist_ok=True)
    if programs:
        args = ["--program", ",".join(f"{n}:{s}" for n, s in unit),
                "--checkpoint-every", str(checkpoint_every)]
        log_name = unit_name(unit)
    else:
        (name, seed), = unit
        args, log_name = [name, str(seed)], f"{name}-seed-{seed}"
    log = open(os.path.join(sweep_dir, "logs", f"{log_name}.log"), "a")
    proc = subprocess.Popen([sys.executable, "-m", "dgg_tf.sweep", os.path.abspath(sweep_dir)]
                            + args, stdout=log, stderr=subprocess.STDOUT, env=cell_env(sweep_dir),
                            start_new_session=True)
    log.close()
    return proc


class _Progress:
    """Counts the finished cells and prints one line per cell with the sweep's ETA."""

    def __init__(self, sweep_dir, total, done, jobs, say):
        self.sweep_dir, self.total, self.done, self.jobs, self.say = \
            sweep_dir, total, done, jobs, say
        self.failed, self.walls = 0, []

    def unit_finished(self, unit, status, t0, left):
        """Each cell of a unit (one cell, or a program's): finished, or failed."""
        epochs = read_json(os.path.join(self.sweep_dir, PLAN))["protocol"]["epochs"]
        for name, seed in unit:
            done = status == 0 or cell_state(cell_dir(self.sweep_dir, name, seed),
                                             epochs) == "done"
            self.finished(name, seed, 0 if done else (status or 1), t0, left)

    def finished(self, name, seed, status, t0, left):
        self.done += 1
        self.failed += status != 0
        self.walls.append(time.time() - t0)
        if status == 0:
            r = cell_result(self.sweep_dir, name, seed)
            what = (f"ACC {number(r['full_acc'])} NMI {number(r['full_nmi'])} (classifier ACC "
                    f"{number(r['classifier_acc'])})")
        else:
            what = f"FAILED (exit {status}; see logs/{name}-seed-{seed}.log and logs/program-*)"
        eta = sum(self.walls) / len(self.walls) * left / max(self.jobs, 1)
        self.say(f"[{self.done}/{self.total}] {name} seed {seed}: {what} in "
                 f"{self.walls[-1] / 60:.1f} min; sweep ETA {duration(eta)}")


class _StopSignals:
    """While the cells run, SIGTERM and Ctrl-C only record the stop (``first``); no
    exception can then interrupt the sweep's waits or be lost. A second stop (not a
    repeat of the first, ``stopping.record``) is ``again``: kill the cells now."""

    def __enter__(self):
        self.first = self.again = None
        self.previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue                    # ignored (a background job): left so
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:              # not the main thread: the caller's signals
                break
        return self

    def _handle(self, signum, frame):
        if stopping.record(signum):
            if self.first is None:
                self.first = signum
            else:
                self.again = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _stop_cells(sweep_dir, running, signals, progress, say):
    """Pass the stop to every running cell (SIGTERM), wait for them up to
    ``STOP_GRACE_SECONDS`` (less on a second signal), kill the rest; say where each
    one stopped."""
    for proc, _ in running.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while (time.monotonic() < deadline and signals.again is None
           and any(proc.poll() is None for proc, _ in running.values())):
        time.sleep(0.1)
    for proc, _ in running.values():
        if proc.poll() is None:
            proc.kill()
    for unit, (proc, t0) in running.items():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:       # stuck in the kernel: nothing more to do
            pass
        if proc.returncode == 0:                # it finished in the meantime
            progress.unit_finished(unit, 0, t0, 0)
            continue
        how = "killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        for name, seed in unit:
            epochs = len(cell_curve(cell_dir(sweep_dir, name, seed)))
            say(f"{name} seed {seed}: stopped after epoch {epochs} ({how}); the same command "
                f"resumes it")


def _run_parallel(sweep_dir, todo, jobs, progress, say=print, programs=False,
                  checkpoint_every=1):
    """Run the units ``todo`` (tuples of cells: one cell each, or a program's cells
    with ``programs``) as subprocesses, ``jobs`` at a time. Returns None, or the
    ``_StopSignals`` of a stop (the cells are then stopped)."""
    queue, running = list(todo), {}
    with _StopSignals() as signals:
        try:
            while (queue or running) and signals.first is None:
                while queue and len(running) < jobs:
                    unit = queue.pop(0)
                    running[unit] = (_spawn(sweep_dir, unit, programs, checkpoint_every),
                                     time.time())
                ended = [k for k, (proc, _) in running.items() if proc.poll() is not None]
                for unit in ended:
                    proc, t0 = running.pop(unit)
                    left = sum(map(len, queue)) + sum(map(len, running))
                    progress.unit_finished(unit, proc.returncode, t0, left)
                if not ended:
                    time.sleep(0.2)
        finally:            # a stop, or an error here: no cell goes on without the sweep
            if running:
                if signals.first is not None:
                    say(f"stopping the {sum(map(len, running))} running cell(s) (a second "
                        f"signal kills them at once)")
                _stop_cells(sweep_dir, running, signals, progress, say)
    return signals if signals.first is not None else None


def run_sweep(sweep_dir, jobs=1, in_process=False, say=print, cells_per_program=None,
              checkpoint_every=1):
    """Run every cell of the prepared sweep not yet finished (``jobs`` subprocesses at a
    time; ``in_process``: in this process, for tests), then write sweep.json, sweep.md
    and sweep.png. ``cells_per_program``: N trains up to N cells of one configuration
    together in one process (``sweep.programs``), None one cell a process; a program
    saves each cell's checkpoint every ``checkpoint_every`` epochs. Returns the
    number of failed cells. Stopped by SIGTERM or Ctrl-C, it stops the cells, writes the
    summary of what has finished and raises ``Terminated`` or ``KeyboardInterrupt`` (a
    second signal: without summary)."""
    plan = read_json(os.path.join(sweep_dir, PLAN))
    cells = _cells(plan)
    todo = [(n, s) for n, s in cells
            if cell_state(cell_dir(sweep_dir, n, s), plan["protocol"]["epochs"]) != "done"]
    programs = cells_per_program is not None
    units = program_units(todo, cells_per_program) if programs else [(c,) for c in todo]
    how = "in this process" if in_process else f"{jobs} at a time"
    if programs:
        how = f"{len(units)} program(s) of at most {cells_per_program} cells, {how}"
    say(f"sweep {sweep_dir}: {len(cells)} cells, {len(cells) - len(todo)} finished, "
        f"{len(todo)} to run ({how})")
    progress = _Progress(sweep_dir, len(cells), len(cells) - len(todo),
                         jobs * (cells_per_program or 1), say)
    if in_process:
        for i, unit in enumerate(units):
            t0 = time.time()
            if programs:
                status = run_program(sweep_dir, unit, say=lambda m: None,
                                     checkpoint_every=checkpoint_every)
            else:
                run_cell(sweep_dir, *unit[0], verbose=0)
                status = 0
            progress.unit_finished(unit, status, t0, sum(map(len, units[i + 1:])))
    else:
        stop = _run_parallel(sweep_dir, units, jobs, progress, say, programs, checkpoint_every)
        if stop is not None and stop.again is not None:
            raise stopping.exception(stop.first)
        if stop is not None:
            write_summary(sweep_dir)
            say(f"wrote {os.path.join(sweep_dir, 'sweep.json')}, sweep.md, sweep.png of the "
                "cells finished so far (curves: the epochs each cell reached)")
            raise stopping.exception(stop.first)
    write_summary(sweep_dir)
    return progress.failed


def _program_cells(text):
    """[(name, seed)] of ``NAME:SEED,NAME:SEED``."""
    return [(n, int(s)) for n, s in (c.rsplit(":", 1) for c in text.split(",") if c)]


def _checkpoint_every(argv):
    """N of a program's ``--checkpoint-every N`` (1 without it); None: not a valid call."""
    if len(argv) == 3:
        return 1
    if len(argv) == 5 and argv[1] == "--program" and argv[3] == "--checkpoint-every" \
            and argv[4].isdigit() and int(argv[4]) >= 1:
        return int(argv[4])
    return None


def main(argv=None):
    """``python -m dgg_tf.sweep SWEEP NAME SEED``: run one cell (the sweep's subprocess);
    ``python -m dgg_tf.sweep SWEEP --program NAME:SEED,... [--checkpoint-every N]``: run
    cells as one program."""
    argv = sys.argv[1:] if argv is None else argv
    every = _checkpoint_every(argv)
    if every is None:
        print("usage: python -m dgg_tf.sweep SWEEP_DIR (NAME SEED | --program NAME:SEED,... "
              "[--checkpoint-every N])", file=sys.stderr)
        return 2
    quiet_tensorflow()
    if argv[1] == "--program":
        return run_main(lambda: min(run_program(argv[0], _program_cells(argv[2]),
                                                checkpoint_every=every), 1) * 2,
                        resume_hint=SWEEP_RESUMES)
    return run_main(lambda: (run_cell(argv[0], argv[1], int(argv[2])), 0)[1],
                    resume_hint=SWEEP_RESUMES)
