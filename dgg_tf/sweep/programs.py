"""A sweep's cells in programs (issue 27, item 5): several cells trained in one process by
``stages.cells.train_cells`` (one vmapped JAX program per config; one after another on
TensorFlow), each cell still ending as an ordinary run directory (config.json,
history.csv, checkpoint.npz, model.h5, predictions.npy, curves.png, report), so that
the sweep's resume, sweep.json, sweep.md and curves stay what they are, per cell.

- Starts: the stages before DGG training (K-means, classifier pretraining) are computed
  once per start key (``api.starts``) and saved once in ``SWEEP/starts/``; every cell
  that shares one, and every resume, reads it there.
- After every epoch each cell gets its history record (lr, the step means the engine
  reports, every loss term among them; with labels the full-pass ACC/NMI of its
  weights, as a cell run alone has them; not the running ACC) and its history.csv; its
  checkpoint (weights and optimizer state, about 40 MB a cell on full MNIST) every
  ``checkpoint_every`` epochs, after the last, and on a stop or an error. A program
  killed outright (SIGKILL) redoes from the last checkpoint at most
  ``checkpoint_every`` - 1 epochs.
- Resume: a cell continues from its checkpoint's epoch with its optimizer state; cells
  at the same epoch train together.
- SIGTERM or Ctrl-C: the stop is raised after the epoch in progress (the engine steps
  all the cells of a program together); finished epochs are kept, each cell's lock
  released. A cell whose loss or weights go non-finite stops alone (the engine's
  message is its error); the others go on.
- A program does not record the full-pass ACC after the first step (config.json
  ``first_steps``), which a cell run alone does.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from dgg_tf.api.core import Run, RunResult, Stages, finish_run, record_stages, start_record
from dgg_tf.api.observers import RunFiles
from dgg_tf.api.pipeline import same_run, write_outputs
from dgg_tf.api.starts import cell_starts, start_file
from dgg_tf.core import stopping
from dgg_tf.core.inputs import check_run_inputs
from dgg_tf.core.rundir import RunDir
from dgg_tf.numerics.evaluation import full_pass_scores
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import set_params
from dgg_tf.stages import cells as engine
from dgg_tf.stages.dgg import compile_dgg, format_record
from dgg_tf.sweep.cells import PLAN, SWEEP_RESUMES, cell_config, cell_dir, cell_state, load_inputs, read_json
from dgg_tf.train.callbacks import TrainingError
from dgg_tf.train.checkpoint import restore_network
from dgg_tf.train.resumable import ResumableStage

STARTS = "starts"


def program_units(cells, per_program):
    """The cells [(name, seed)] in programs of at most ``per_program``: cells of one
    configuration together (they share a compiled program), seeds in order."""
    by_name = {}
    for name, seed in cells:
        by_name.setdefault(name, []).append((name, seed))
    units = []
    for members in by_name.values():
        units += [tuple(members[i:i + per_program]) for i in range(0, len(members), per_program)]
    return sorted(units, key=lambda unit: unit[0][1])


def unit_name(unit):
    """The log name of a program: ``program-NAME-seeds-0-1`` (never ``-seed-``, which
    names one cell's log)."""
    names = sorted({n for n, _ in unit})
    return f"program-{'+'.join(names)}-seeds-{'-'.join(str(s) for _, s in unit)}"


@dataclasses.dataclass
class _Cell:
    """One cell while its program trains."""
    name: str
    seed: int
    config: object
    inputs: object
    run_dir: RunDir
    stage: ResumableStage
    record: object
    log: str
    stages: Stages = None
    params: dict = None
    optimizer: list = None
    history: list = dataclasses.field(default_factory=list)
    failed: str = None
    t0: float = 0.0
    unsaved: bool = False           # epochs trained since the last checkpoint

    def say(self, line):
        with open(self.log, "a") as f:
            f.write(line + "\n")


def run_program(sweep_dir, cells, say=print, checkpoint_every=1):
    """Train the cells [(name, seed)] of a prepared sweep in one process, each resumed
    from its checkpoint or started from its saved start; returns the number of cells
    that failed. Each cell's checkpoint is saved every ``checkpoint_every`` epochs and
    after its last. Raises the stop on SIGTERM or Ctrl-C, finished epochs saved."""
    plan = read_json(os.path.join(sweep_dir, PLAN))
    epochs = int(plan["protocol"]["epochs"])
    todo = [(n, int(s)) for n, s in cells
            if cell_state(cell_dir(sweep_dir, n, s), epochs) != "done"]
    if not todo:
        return 0
    x, y, tables = load_inputs(sweep_dir)
    members, locks = [], []
    try:
        for name, seed in todo:
            cell, lock = _open_cell(sweep_dir, plan, name, seed, x, y, tables)
            members.append(cell)
            locks.append(lock)
        _starts(sweep_dir, [m for m in members if m.params is None])
        say(f"program: {len(members)} cells ({', '.join(f'{m.name}/{m.seed}' for m in members)})")
        try:
            _train(members, epochs, say, checkpoint_every)
        except (ValueError, OSError, TrainingError, KeyboardInterrupt) as e:
            for m in members:           # every finished epoch kept, whatever stopped it
                if m.unsaved:
                    _save(m)
            _tell_unfinished(members, epochs, e)
            raise
        for m in members:
            if m.failed is None:
                _write_cell(m)
    finally:
        for lock in locks:
            lock.release()
    return sum(m.failed is not None for m in members)


def _tell_unfinished(members, epochs, error):
    """Each unfinished cell's log says why it ended (as a cell run alone prints it)."""
    if isinstance(error, KeyboardInterrupt):
        how = "stopped by SIGTERM" if isinstance(error, stopping.Terminated) else "interrupted"
        line = f"{how}; {SWEEP_RESUMES}"
    else:
        line = f"error: {error}"
    for m in members:
        if len(m.history) < epochs:
            m.say(line + f" (in a program, after epoch {len(m.history)})")


def _open_cell(sweep_dir, plan, name, seed, x, y, tables):
    """Check a cell's inputs, lock its run directory and read its checkpoint (or
    prepare its record); returns the ``_Cell`` and the held lock."""
    config = cell_config(plan, name, seed)
    if config.neighbor_selection not in tables:
        raise ValueError(f"the sweep's inputs hold no {config.neighbor_selection} table")
    inputs = check_run_inputs(config, x, y, tables, plan["weights"], probe_steps=())
    path = cell_dir(sweep_dir, name, seed)
    info = {"variant": name, "sweep": os.path.abspath(sweep_dir),
            "data": plan["protocol"]["data"],
            "command": f"python -m dgg_tf.sweep {sweep_dir} --program {name}:{seed}"}
    record = start_record(config, inputs, info, path)
    run_dir = RunDir(path)
    resume = run_dir.holds_run()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = run_dir.open(resume)
    stage = ResumableStage(run_dir.checkpoint, "dgg", same_run(config, inputs),
                           {"variant": name})
    log = os.path.join(sweep_dir, "logs", f"{name}-seed-{seed}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    cell = _Cell(name, seed, config, inputs, run_dir, stage, record, log)
    state = stage.resume(verbose=0) if resume else None
    if state is not None:
        cell.params, cell.optimizer = state["params"], state["optimizer"] or None
        cell.stages, cell.history = Stages.from_checkpoint(state), list(state["history"])
        cell.record = (run_dir.read_record() or record).resumed_by(record, state["epoch"])
        run_dir.write_record(cell.record)
        cell.say(f"resumed after epoch {state['epoch']} (in a program)")
    return cell, lock


def _starts(sweep_dir, fresh):
    """Give the fresh cells their saved (or now computed) start and write their record."""
    if not fresh:
        return
    found = cell_starts([m.config for m in fresh], fresh[0].inputs,
                        store=os.path.join(sweep_dir, STARTS))
    for m, (params, stages) in zip(fresh, found):
        m.params, m.stages = params, stages
        record_stages(m.record, stages)
        m.run_dir.write_record(m.record)
        where = os.path.relpath(start_file(os.path.join(sweep_dir, STARTS), m.config),
                                sweep_dir)
        m.say(f"start: {where} (GMM init ACC {m.record.gmm_init_acc}, classifier ACC "
              f"{m.record.classifier_acc})")


def _train(members, epochs, say, checkpoint_every):
    """Train the cells, those at the same epoch on the same table together."""
    groups = {}
    for m in members:
        if len(m.history) < epochs:
            groups.setdefault((len(m.history), m.config.neighbor_selection), []).append(m)
    for (start, _), group in sorted(groups.items(), key=lambda g: g[0][0]):
        for m in group:
            m.stage.start_clock()
            m.t0 = time.time()
            m.say(f"DGG training: epochs {start + 1}..{epochs} in a program of {len(group)} "
                  f"cells")
        scorer = _Scorer(group[0].inputs.x, group[0].inputs.y)
        hook = _epoch_hook(group, scorer, say, checkpoint_every, epochs)
        base = group[0].config
        train_program(base, group[0].inputs.x, group[0].inputs.table,
                      [m.params for m in group], [_differences(base, m.config) for m in group],
                      epochs=epochs, initial_epoch=start,
                      optimizer_states=[m.optimizer for m in group], on_epoch=hook)


def _differences(base, config):
    """The fields of ``config`` that differ from ``base`` (a cell of ``train_cells``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(base, f.name)}


class _Scorer:
    """Full-pass ACC/NMI of a cell's weights (one evaluation network per config)."""

    def __init__(self, x, y):
        self.x, self.y, self.nets = x, y, {}

    def __call__(self, config, params):
        if self.y is None:
            return {}
        if config not in self.nets:
            self.nets[config] = DGGNetwork(config)
        net = self.nets[config]
        set_params(net, params)
        return full_pass_scores(net, self.x, self.y)


def _epoch_hook(group, scorer, say, checkpoint_every, epochs):
    """``on_epoch(epoch, results)``: each cell's record and history.csv, its checkpoint
    every ``checkpoint_every`` epochs and after the last (``epochs``); then the stop, if
    one was asked for. A cell that fails gets its checkpoint of the epochs it finished."""
    def on_epoch(epoch, results):
        for m, r in zip(group, results):
            if r is not None and m.failed is None:
                _epoch_done(m, r, scorer)
                if m.unsaved and (m.failed or epoch % checkpoint_every == 0
                                  or epoch == epochs):
                    _save(m)            # a failed cell keeps the epochs it finished
        signum = stopping.asked()
        if signum is not None:
            raise stopping.exception(signum)
    return on_epoch


def _epoch_done(m, result, scorer):
    if result.get("stopped"):       # the engine's message: what, the epoch and the batch
        m.failed = result["stopped"]
        m.say(f"error: {m.failed} (in a program)")
        return
    last = result["history"][-1]
    epoch, cfg = int(last["epoch"]), m.config
    m.params, m.optimizer = result["params"], result.get("optimizer")
    steps = {k: float(v) for k, v in last.items() if k not in ("epoch", "seconds", "lr",
                                                                 "peak_rss_mb")}
    record = {"epoch": epoch, "lr": last["lr"], **steps, **scorer(cfg, m.params),
              "seconds": time.time() - m.t0}
    m.t0 = time.time()
    m.history.append(record)
    m.run_dir.write_history(m.history)
    m.unsaved = True
    m.say(format_record(record))


def _save(m):
    """The cell's checkpoint after its last finished epoch."""
    m.stage.save({"params": m.params, "optimizer": m.optimizer,
                  "arrays": {"kmeans_labels": np.asarray(m.stages.kmeans_labels)},
                  "epoch": len(m.history), "history": m.history, **m.stages.summary()})
    m.unsaved = False


def _write_cell(m):
    """A trained cell's final files, as ``run_dgg`` writes them."""
    net = compile_dgg(DGGNetwork(m.config))
    restore_network(net, m.params, m.optimizer or [])
    run = Run(m.config, m.inputs, net, m.stages, m.history, m.record)
    files = RunFiles(m.run_dir, m.stage)
    files.run = run
    pred = finish_run(run, m.stage.wall_seconds)
    write_outputs(RunResult(net, m.history, m.record, pred, m.stages), m.inputs, files)
    m.say(f"done: {len(m.history)} epochs (in a program)")


# ---------------------------------------------------------------- the engine's interface
def train_program(config, x, table, starts, cells, *, epochs, initial_epoch, optimizer_states,
                  on_epoch):
    """``stages.cells.train_cells`` with its per-epoch hook and resume: on JAX the cells
    are one vmapped program, on TensorFlow they train one after another."""
    return engine.train_cells(config, x, table, starts, cells, epochs=epochs,
                              on_epoch=on_epoch, initial_epoch=initial_epoch,
                              optimizer_states=optimizer_states)
