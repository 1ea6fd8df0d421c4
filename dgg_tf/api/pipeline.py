"""The whole DGG pipeline as one library call, with its files (what
``reproduce/mnist.py`` runs):

    run_dgg(config, x, y, neighbors=..., weights=..., workdir=...)

checks every input before any work (``core.inputs``), locks the run directory, runs
the stages in memory (``api.core``: GMM init, classifier pretraining, the discrepancy
audit, DGG training) with the file observers attached (a checkpoint after every
epoch), and writes the run's files: config.json, history.csv, model.h5,
predictions.npy, curves.png, report.md/json.
"""
from __future__ import annotations

import contextlib
import dataclasses

from dgg_tf import report as rep
from dgg_tf.api import observers
from dgg_tf.api.core import Options, Resume, Stages, report_purity, run_in_memory, start_record
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.console import say
from dgg_tf.core.inputs import check_run_inputs
from dgg_tf.core.record import run_summary, summary_lines
from dgg_tf.core.rundir import RunDir
from dgg_tf.numerics.weights import get_params, save_weights_h5
from dgg_tf.stages.watch import CollapseWatch
from dgg_tf.train.resumable import ResumableStage


@dataclasses.dataclass
class RunOptions(Options):
    """How ``run_dgg`` runs (everything but the config and the inputs); each is a
    keyword of ``run_dgg``: the in-memory core's ``Options`` and what concerns files.

    ``resume`` continues the checkpoint in the run directory exactly. ``callbacks``:
    Keras callbacks for DGG training (``history[-1]`` of the result is each epoch's
    record when they run). ``verbose``: 0 silent, 1 progress bars, 2 one line per
    epoch. ``audit``: measure the discrepancy audit before training (``audit_only``:
    and stop there), on ``audit_batches`` batches, with ``audit_classifier_epochs``
    for Q5 (None: the config's). ``strategy``: a ``tf.distribute`` strategy.
    ``steps_per_execution``: steps per compiled call. ``tensorboard``: a log
    directory. ``info``: extra entries for config.json (command, variant, data
    description); ``neighbor_info`` likewise for the neighbour table's entry (how it
    was built). ``probe_steps``: the steps of a fresh run's first epoch after which
    the full-pass ACC is recorded (config.json "first_steps"; with labels only; ()
    for none).
    """
    resume: bool = False
    callbacks: tuple = ()
    audit: bool = True
    tensorboard: str = None
    info: dict = None
    neighbor_info: dict = None
    probe_steps: tuple = (1,)


def run_options(options):
    """``RunOptions`` of ``run_dgg``'s keywords; TypeError naming an unknown one."""
    known = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"run_dgg got unknown option(s) {', '.join(unknown)}; the options "
                        f"are {', '.join(sorted(known))}")
    return RunOptions(**options)


def run_dgg(config: DGGConfig, x, y=None, *, neighbors, weights, workdir, **options):
    """Run DGG end to end in ``workdir``; returns a dict with the history, predictions
    and the path of the run.

    ``x`` [N, D] data, ``y`` [N] labels or None (used only for metrics). ``neighbors``:
    a table file, an (N, 1 + k) index table, or {selection mode: table}. ``weights``: an
    autoencoder weight file (our .h5, VaDE's .h5, DGG's .out folder) or a params dict.
    ``options``: the fields of ``RunOptions`` (resume, callbacks, verbose, audit, ...).
    Bad input raises ValueError before any work and before the run directory is
    created; a busy directory raises RunDirError.
    """
    opts = run_options(options)
    inputs = check_run_inputs(config, x, y, neighbors, weights,
                              neighbor_info=opts.neighbor_info,
                              steps_per_execution=opts.steps_per_execution,
                              probe_steps=opts.probe_steps)
    record = start_record(config, inputs, opts.info, workdir)
    return _run_in_dir(config, inputs, workdir, record, opts)


def run_checked(config, inputs, workdir, record, **options):
    """``run_dgg`` on inputs already checked (``core.inputs.RunInputs``) and a started
    ``record`` (``api.core.start_record``): what the estimator runs with a workdir."""
    return _run_in_dir(config, inputs, workdir, record, run_options(options))


def _run_in_dir(config, inputs, workdir, record, opts):
    report_purity(inputs.neighbors.get("purity"), config, opts.verbose)
    run_dir = RunDir(workdir)
    lock = run_dir.open(opts.resume)      # checks, then creates and locks it
    try:
        return _run_locked(config, inputs, run_dir, record, opts)
    finally:
        lock.release()


def same_run(config, inputs):
    """What a resumed run must share with its checkpoint: the config (the number of
    epochs aside, which --resume may raise), the data and the neighbour table."""
    settings = config.to_dict()
    settings.pop("epochs", None)
    return {"config": settings, **inputs.fingerprints}


def _resume(stage, run_dir, record, verbose):
    """The checkpoint to continue from (``Resume``) and the record it continues, or
    ``(None, record)`` when the directory holds no checkpoint yet."""
    state = stage.resume(verbose)
    if state is None:
        return None, record
    resume = Resume(params=state["params"], optimizer=state["optimizer"] or [],
                    stages=Stages.from_checkpoint(state), history=list(state["history"]),
                    wall_seconds=stage.wall_before)
    return resume, (run_dir.read_record() or record).resumed_by(record, state["epoch"])


def _observers(opts, files):
    """The console, the collapse watch, the files and TensorBoard, then the user's."""
    own = observers.console(opts.verbose) + [CollapseWatch(opts.verbose), files]
    own += [observers.RecordBoard(opts.tensorboard)] if opts.tensorboard else []
    return own + list(opts.callbacks)


def _core_options(opts):
    return Options(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(Options)})


def write_outputs(result, inputs, files):
    """The final files: model.h5, predictions.npy, history, curves, report, config.json,
    and the last checkpoint."""
    record, run_dir = result.record, files.dir
    final = result.history[-1] if result.history else {}
    save_weights_h5(run_dir.model_h5, get_params(result.net), {
        "source": "dgg_tf.pipeline.run_dgg", "config": result.net.config.to_dict(),
        "variant": record.variant, "epochs": len(result.history),
        "command": record.info.get("command"), "seed": result.net.config.seed,
        "init_weights": inputs.weights.get("path"),
        "metrics": {k: final.get(k) for k in ("full_acc", "full_nmi", "running_acc",
                                              "running_nmi")}})
    run_dir.write_predictions(result.predictions)
    files.curves(final=True)
    record.summary = run_summary(result.history, record, run_dir)
    rep.write_report(run_dir.path, result.stages.audit,
                     [{**files.report_run(), "variant": record.variant}],
                     summary=record.summary)
    run_dir.write_record(record)
    files.checkpoint()


def _run_locked(config, inputs, run_dir, record, opts):
    stage = ResumableStage(run_dir.checkpoint, "dgg", same_run(config, inputs),
                           {"variant": record.variant})
    resume, record = (_resume(stage, run_dir, record, opts.verbose) if opts.resume
                      else (None, record))
    files = observers.RunFiles(run_dir, stage, opts.audit_only)
    try:
        result = run_in_memory(config, inputs, record, resume=resume,
                               observers=_observers(opts, files), options=_core_options(opts))
    except BaseException:            # a stop or an error: curves.png of the epochs kept
        if files.run is not None and files.run.history:
            with contextlib.suppress(Exception):   # what is reported is the stop or error
                files.curves(final=True)
        raise
    if opts.audit_only:
        rep.write_report(run_dir.path, result.stages.audit)
        return {"workdir": run_dir.path, "history": [], "audit": result.stages.audit}
    write_outputs(result, inputs, files)
    say(opts.verbose, f"done: {len(result.history)} epochs; outputs in {run_dir.path}")
    for line in summary_lines(record.summary):
        say(opts.verbose, "  " + line)
    return {"workdir": run_dir.path, "history": result.history,
            "predictions": result.predictions, "network": result.net,
            "audit": result.stages.audit, "record": record, "config_json": record.to_json()}
