"""The whole DGG pipeline as one library call (what ``reproduce/mnist.py`` runs):

    run_dgg(config, x, y, neighbors=..., weights=..., workdir=...)

checks every input before any work, locks the run directory, initialises the GMM
from K-means, pretrains the classifier, measures the discrepancy audit, trains through
``fit`` with a checkpoint after every epoch, and writes the run's files:
config.json, history.csv, model.h5, predictions.npy, curves.png, report.md/json.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time

import keras
import numpy as np

from dgg_tf import backend
from dgg_tf import report as rep
from dgg_tf.audit import audit as measure_audit
from dgg_tf.core.collapse import classifier_acc
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.console import duration, say, stage
from dgg_tf.core.files import fingerprint, write_bytes_atomic, write_json_atomic
from dgg_tf.core.metrics import cluster_acc, nmi
from dgg_tf.core.record import run_summary, summary_lines
from dgg_tf.core.rundir import open_run_dir
from dgg_tf.core.tables import neighbor_purity
from dgg_tf.numerics.evaluation import predict
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import (get_params, library_versions, load_autoencoder,
                                     save_weights_h5, set_params)
from dgg_tf.stages.dgg import (check_data, check_labels_and_batches, check_steps_per_execution,
                               compile_dgg, encode, fit_dgg, format_record)
from dgg_tf.stages.initialise import init_gmm, pretrain_classifier
from dgg_tf.stages.neighbors import as_tables
from dgg_tf.stages.timing import should_warm_up, warmup_seconds
from dgg_tf.stages.watch import collapse_callback, first_steps_callback
from dgg_tf.train.callbacks import EpochEnd
from dgg_tf.train.checkpoint import (RUN_CHECKPOINT, optimizer_arrays, restore_network,
                                     resume_checkpoint, save_checkpoint)
from dgg_tf.train.fit import steps_per_epoch


# ---------------------------------------------------------------- checks (before any work)
def prepare_inputs(config: DGGConfig, x, y, neighbors, weights, neighbor_info=None):
    """Every check that can run before the work: data, labels, neighbour tables and
    weights against the config. Returns a dict of the checked inputs."""
    x = np.asarray(x, np.float32)
    check_data(x, config)
    y = None if y is None else np.asarray(y)
    tables, stored_purity, table_info = as_tables(neighbors, len(x), config)
    table_info.update(neighbor_info or {})
    table = tables[config.neighbor_selection]
    check_labels_and_batches(x, y, config)      # as_tables has checked the tables
    if isinstance(weights, dict):
        params, provenance = weights, {"source": "arrays passed to run_dgg"}
    else:
        params, provenance = load_autoencoder(os.fspath(weights), config)
        provenance = {"path": os.path.abspath(os.fspath(weights)), **provenance}
    if y is not None:
        table_info["purity"] = neighbor_purity(table, y, config.num_neighbors)
    return {"x": x, "y": y, "table": table, "tables": tables, "stored_purity": stored_purity,
            "neighbors": table_info, "params": params, "weights": provenance,
            "fingerprints": {"data_fingerprint": fingerprint(x),
                             "table_fingerprint": fingerprint(table)}}


def _run_info(config, inputs, workdir, info):
    keep = ("source", "schedule", "stage", "command", "epochs", "metrics", "date", "format", "path")
    return {**(info or {}), "seed": config.seed, "config": config.to_dict(),
            "epochs": config.epochs, "library_versions": library_versions(),
            "n_samples": int(len(inputs["x"])), "neighbors": inputs["neighbors"],
            "weights_provenance": {k: v for k, v in inputs["weights"].items() if k in keep},
            "out": os.path.abspath(workdir), **inputs["fingerprints"],
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat()}


# ---------------------------------------------------------------- the stages before training
def build_dgg(config, params, strategy=None, steps_per_execution=1, verbose=1):
    """A compiled DGGNetwork holding the autoencoder weights (the rest keeps its init)."""
    keras.utils.set_random_seed(config.seed)
    with backend.strategy_scope(strategy):
        net = DGGNetwork(config)
        assigned = set_params(net, params, partial=True, source="weights")
        compile_dgg(net, config, steps_per_execution)
    kept = sorted({n.split("/")[0] for n in get_params(net)} - {n.split("/")[0] for n in assigned})
    say(verbose, f"weights: loaded {len(assigned)} arrays"
         + (f"; {', '.join(kept)} keep their initialisation" if kept else ""))
    return net


def initial_stages(net, inputs, config, audit=True, audit_batches=10,
                   audit_classifier_epochs=None, verbose=1):
    """GMM init from K-means, classifier pretraining and (optionally) the audit; returns
    what the checkpoint keeps of them."""
    x, y = inputs["x"], inputs["y"]
    with stage(verbose, "GMM init (K-means on the encoder means)"):
        init = init_gmm(net, x, y, config, verbose=0)
    summary = {k: v for k, v in init.items() if k != "kmeans_labels"}
    if y is not None:
        say(verbose, f"GMM init: K-means(n_init={config.kmeans_n_init}) ACC="
             f"{init['kmeans_acc']:.4f} NMI={init['kmeans_nmi']:.4f}; GMM without pi (code, "
             f"Q3) ACC={init['gmm_no_pi_acc']:.4f}; with pi ACC={init['gmm_with_pi_acc']:.4f}")
    cls_init = {k: v for k, v in get_params(net).items() if k.startswith("classifier/")}
    say(verbose, f"classifier pretraining: {config.classifier_epochs} epochs, loss "
         f"{config.classifier_pretrain_loss}")
    with stage(verbose, "classifier pretraining"):
        cls_hist = pretrain_classifier(net, encode(net, x), init["kmeans_labels"], config, y,
                                       seed=config.seed, verbose=1 if verbose else 0)
    result = None
    if audit:
        say(verbose, f"audit: {audit_batches} batches of {config.batch_size} x "
             f"{config.num_neighbors + 1} rows")
        with stage(verbose, "audit"):
            result = measure_audit(net, x, inputs["table"], y, config, n_batches=audit_batches,
                               seed=config.seed, tables=inputs["tables"],
                               stored_purity=inputs["stored_purity"],
                               kmeans_labels=init["kmeans_labels"], classifier_init=cls_init,
                               classifier_epochs=audit_classifier_epochs,
                               classifier_histories={config.classifier_pretrain_loss: cls_hist},
                               weights_info=inputs["weights"], verbose=verbose > 1)
    return {"init": summary, "classifier_history": cls_hist, "audit": result,
            "kmeans_labels": init["kmeans_labels"]}


# ---------------------------------------------------------------- training and outputs
# what the stages before training left: kept in the "dgg" checkpoint's state (the rest
# of a run's meta is its provenance: what a resume must match, the variant, the time)
_STAGE_ENTRIES = ("init", "classifier_history", "audit", "first_steps")


def _same_run(config, inputs):
    """What a resumed run must share with its checkpoint: the config (the number of
    epochs aside, which --resume may raise), the data and the neighbour table."""
    settings = config.to_dict()
    settings.pop("epochs", None)
    return {"config": settings, **inputs["fingerprints"]}


class _RunFiles:
    """Writes a run's per-epoch files: the checkpoint, history.csv and curves.png."""

    def __init__(self, workdir, net, meta, kmeans_labels, history, name, wall_before=0.0):
        self.workdir, self.net, self.meta = workdir, net, meta
        self.kmeans_labels, self.history, self.name = kmeans_labels, history, name
        self.t0, self.wall_before = time.time(), wall_before

    def checkpoint(self):
        self.meta["wall_seconds"] = self.wall_before + time.time() - self.t0
        state = {"params": get_params(self.net), "optimizer": optimizer_arrays(self.net.optimizer),
                 "arrays": {"kmeans_labels": np.asarray(self.kmeans_labels)},
                 "epoch": len(self.history), "history": self.history,
                 **{k: self.meta.get(k) for k in _STAGE_ENTRIES}}
        provenance = {k: v for k, v in self.meta.items() if k not in _STAGE_ENTRIES}
        save_checkpoint(os.path.join(self.workdir, RUN_CHECKPOINT), "dgg", state, provenance)

    def run(self):
        """The run as the report sees it: name, variant, history, classifier ACC, and
        the full-pass ACC after the first steps."""
        return {"name": self.name, "variant": self.meta.get("variant"), "history": self.history,
                "classifier_acc": classifier_acc(self.meta.get("classifier_history")),
                "first_steps": self.meta.get("first_steps") or []}

    def curves(self):
        rep.write_history_csv(os.path.join(self.workdir, "history.csv"), self.history)
        rep.plot_curves(os.path.join(self.workdir, "curves.png"), [self.run()])

    def on_epoch(self, epoch, logs):
        self.checkpoint()
        self.curves()


class EpochSummary(keras.callbacks.Callback):
    """Prints each epoch's record, and after this run's first epoch the time left."""

    def __init__(self, total_epochs, history, verbose):
        super().__init__()
        self.total_epochs, self.history, self.verbose = total_epochs, history, verbose
        self.first = True

    def on_epoch_end(self, epoch, logs=None):
        record = self.history[-1]
        say(self.verbose, format_record(record))
        if self.first and epoch + 1 < self.total_epochs:
            self.first = False
            say(self.verbose, _time_left(epoch, self.total_epochs, record["seconds"]))


def _time_left(epoch, total_epochs, seconds):
    left = (total_epochs - epoch - 1) * seconds
    finish = datetime.datetime.now() + datetime.timedelta(seconds=left)
    return (f"epoch {epoch + 1} took {seconds:.0f} s; the {total_epochs - epoch - 1} epochs "
            f"left take about {duration(left)} (done about {finish:%Y-%m-%d %H:%M})")


class EarlyEstimate(keras.callbacks.Callback):
    """Prints an estimate of the whole training from its first steps (the median of
    steps 2..``steps`` + 1 of this run: step 1 includes tracing), long before the first
    epoch ends; ``EpochSummary`` refines it after that epoch. Reads the clock only."""

    def __init__(self, total_steps, verbose, steps=10):
        super().__init__()
        self.total, self.verbose, self.times = total_steps, verbose, []
        self.steps = min(steps, total_steps // 2)      # a short run: half its steps

    def on_train_batch_begin(self, batch, logs=None):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if len(self.times) > self.steps:
            return
        self.times.append(time.perf_counter() - self.t0)
        if len(self.times) == self.steps + 1 and self.steps:
            per = float(np.median(self.times[1:])) / max(self.model.steps_per_execution, 1)
            say(self.verbose, f"estimate from the first steps: {per:.3f} s a step, about "
                 f"{duration(per * self.total)} for the {self.total} steps of training (plus a "
                 "full-pass evaluation per epoch)")


def _tensorboard(log_dir, history):
    """Keras' TensorBoard callback, given each epoch's whole record (loss terms, lr,
    ACC, NMI) rather than the progress bar's running loss."""

    class RecordBoard(keras.callbacks.TensorBoard):
        def on_epoch_end(self, epoch, logs=None):
            record = {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")}
            super().on_epoch_end(epoch, record)
    return RecordBoard(log_dir, write_graph=False, update_freq="epoch", profile_batch=0)


def train_run(net, inputs, files, start_epoch, callbacks=(), tensorboard=None, verbose=1,
              probe_steps=(1,)):
    """DGG training from ``start_epoch`` with the run's callbacks, then the user's;
    a fresh run with labels also records the full-pass ACC after ``probe_steps``."""
    eta = EpochSummary(net.config.epochs, files.history, verbose)
    reference = files.run()["classifier_acc"]
    watch = collapse_callback(files.history, inputs["x"], net.config.n_clusters, reference,
                              epochs=net.config.epochs, verbose=verbose)
    total = steps_per_epoch(len(inputs["x"]), net.config.batch_size) * (
        net.config.epochs - start_epoch)
    # Keras adds its progress bar after the callbacks it is given; given first, the bar
    # ends its line before the epoch record is printed (one bar, then one clean line)
    bar = [keras.callbacks.ProgbarLogger()] if verbose == 1 else []
    own = bar + [EarlyEstimate(total, verbose), eta,
                 watch, EpochEnd(files.on_epoch)] + (
        [_tensorboard(tensorboard, files.history)] if tensorboard else [])
    if start_epoch == 0 and probe_steps and inputs["y"] is not None:
        own.append(first_steps_callback(files.meta.setdefault("first_steps", []), inputs["x"],
                                        inputs["y"], probe_steps, reference,
                                        say=lambda m: say(verbose, m)))
    say(verbose, f"DGG training: epochs {start_epoch + 1}..{net.config.epochs}, "
         f"out {files.workdir}")
    if should_warm_up(net, total, verbose):
        per = warmup_seconds(net, inputs["x"], inputs["table"], net.config)
        say(verbose, f"estimate before training (a timed warm-up: one batch's forward and "
                     f"backward pass): about {per:.3f} s a step, {duration(per * total)} for "
                     f"the {total} steps; refined from the first steps and after epoch 1")
    with stage(verbose, "DGG training"):
        return fit_dgg(net, inputs["x"], inputs["table"], inputs["y"], history=files.history,
                       initial_epoch=start_epoch, callbacks=own + list(callbacks),
                       verbose=1 if verbose == 1 else 0)


def finish_run(net, inputs, files, run_info, audit):
    """The final files: model.h5, predictions.npy, history, curves, report, config.json."""
    x, y, workdir = inputs["x"], inputs["y"], files.workdir
    final = files.history[-1] if files.history else {}
    save_weights_h5(os.path.join(workdir, "model.h5"), get_params(net), {
        "source": "dgg_tf.pipeline.run_dgg", "config": net.config.to_dict(),
        "variant": run_info.get("variant"),
        "epochs": len(files.history), "command": run_info.get("command"),
        "seed": net.config.seed, "init_weights": inputs["weights"].get("path"),
        "metrics": {k: final.get(k) for k in ("full_acc", "full_nmi", "running_acc",
                                              "running_nmi")}})
    pred = predict(net, x)
    write_bytes_atomic(os.path.join(workdir, "predictions.npy"),
                       lambda f: np.save(f, pred.astype(np.int64)))
    files.curves()
    if files.meta.get("first_steps"):
        run_info["first_steps"] = files.meta["first_steps"]
    run_info["summary"] = run_summary(files.history, run_info, workdir)
    rep.write_report(workdir, audit, [{**files.run(), "variant": run_info.get("variant")}],
                     summary=run_info["summary"])
    wall = files.wall_before + time.time() - files.t0
    run_info["finished"] = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                            "epochs": len(files.history), "wall_seconds": round(wall, 1)}
    if y is not None:
        run_info["finished"].update(acc=cluster_acc(y, pred), nmi_max=nmi(y, pred, "max"),
                                    nmi_arithmetic=nmi(y, pred))
    write_json_atomic(os.path.join(workdir, "config.json"), run_info)
    files.checkpoint()
    return pred


def _report_purity(purity, config, verbose):
    """Print the neighbour table's purity; warn when it is low (a quick look on a
    subset with raw-pixel neighbours collapses easily)."""
    if purity is None:
        return
    say(verbose, f"neighbours: purity {purity:.3f} (share of the {config.num_neighbors} "
         "training neighbours that carry the sample's label)")
    if purity < 0.8 and verbose:
        print(f"warning: neighbour purity {purity:.3f} is below 0.8; DGG pulls samples "
              "towards their neighbours' clusters, so expect a poorer clustering (the "
              "shipped MNIST tables have 0.96)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the whole run
def _resume(net, found, config, workdir, run_info):
    """Restore a checkpoint (``resume_checkpoint``'s) into ``net``; returns (stages,
    history, wall seconds so far, run_info)."""
    state, provenance = found
    restore_network(net, state["params"], state["optimizer"] or [])
    stages = {"init": state["init"], "classifier_history": state["classifier_history"],
              "audit": state["audit"], "kmeans_labels": state["arrays"]["kmeans_labels"],
              "first_steps": state.get("first_steps") or []}
    old_path = os.path.join(workdir, "config.json")
    old = run_info
    if os.path.exists(old_path):
        with open(old_path) as f:
            old = json.load(f)
    run_info = {**old, "epochs": config.epochs, "resumed": old.get("resumed", []) + [
        {"at": run_info["started"], "from_epoch": state["epoch"], "epochs": config.epochs,
         "command": run_info.get("command"), "library_versions": run_info["library_versions"]}]}
    run_info["config"]["epochs"] = config.epochs
    return stages, list(state["history"]), provenance.get("wall_seconds", 0.0), run_info


@dataclasses.dataclass
class RunOptions:
    """How ``run_dgg`` runs (everything but the config and the inputs); each is a
    keyword of ``run_dgg``.

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
    verbose: int = 1
    audit: bool = True
    audit_only: bool = False
    audit_batches: int = 10
    audit_classifier_epochs: int = None
    strategy: object = None
    steps_per_execution: int = 1
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
    inputs = prepare_inputs(config, x, y, neighbors, weights, opts.neighbor_info)
    n_steps = steps_per_epoch(len(inputs["x"]), config.batch_size)
    opts = dataclasses.replace(opts, callbacks=tuple(opts.callbacks),
                               probe_steps=_check_probe_steps(opts.probe_steps, n_steps))
    check_steps_per_execution(len(inputs["x"]), config.batch_size, opts.steps_per_execution)
    _report_purity(inputs["neighbors"].get("purity"), config, opts.verbose)
    run_info = _run_info(config, inputs, workdir, opts.info)
    lock = open_run_dir(workdir, opts.resume)      # checks, then creates and locks it
    try:
        return _run_locked(config, inputs, workdir, run_info, opts)
    finally:
        lock.release()


def _check_probe_steps(steps, n_steps):
    """``probe_steps`` as a tuple of step numbers within the first epoch (1..n_steps);
    ValueError otherwise."""
    steps = tuple(steps or ())
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= s <= n_steps
           for s in steps):
        raise ValueError(f"probe_steps must be steps of the first epoch, 1..{n_steps}; "
                         f"got {steps!r}")
    return tuple(int(s) for s in steps)


def _start_or_resume(net, config, inputs, workdir, run_info, opts):
    """The stages before training, run now or read from the checkpoint."""
    found = resume_checkpoint(os.path.join(workdir, RUN_CHECKPOINT), "dgg",
                              _same_run(config, inputs), opts.verbose) if opts.resume else None
    if found:
        stages, history, wall_before, run_info = _resume(net, found, config, workdir, run_info)
        return stages, history, run_info, wall_before
    stages = initial_stages(net, inputs, config, opts.audit or opts.audit_only,
                            opts.audit_batches, opts.audit_classifier_epochs, opts.verbose)
    if stages["classifier_history"]:
        run_info["classifier"] = stages["classifier_history"][-1]
    if stages["init"]:
        run_info["gmm_init"] = stages["init"]
    if stages["audit"] is not None:
        run_info["audit_seconds"] = stages["audit"]["setup"]["seconds"]
    return stages, [], run_info, 0.0


def _run_locked(config, inputs, workdir, run_info, opts):
    net = build_dgg(config, inputs["params"], opts.strategy, opts.steps_per_execution,
                    opts.verbose)
    stages, history, run_info, wall_before = _start_or_resume(net, config, inputs, workdir,
                                                              run_info, opts)
    write_json_atomic(os.path.join(workdir, "config.json"), run_info)
    if opts.audit_only:
        rep.write_report(workdir, stages["audit"])
        return {"workdir": workdir, "history": [], "audit": stages["audit"]}
    meta = {**_same_run(config, inputs), "variant": run_info.get("variant"),
            "init": stages["init"],
            "classifier_history": stages["classifier_history"], "audit": stages["audit"],
            "first_steps": list(stages.get("first_steps") or [])}
    files = _RunFiles(workdir, net, meta, stages["kmeans_labels"], history,
                      os.path.basename(os.path.normpath(workdir)), wall_before)
    if not history:
        files.checkpoint()                  # epoch 0: init, classifier and audit are kept
        rep.write_report(workdir, stages["audit"])
    else:
        files.curves()                      # the files agree with the checkpoint again
    train_run(net, inputs, files, len(history), opts.callbacks, opts.tensorboard, opts.verbose,
              opts.probe_steps)
    pred = finish_run(net, inputs, files, run_info, stages["audit"])
    say(opts.verbose, f"done: {len(history)} epochs; outputs in {workdir}")
    for line in summary_lines(run_info["summary"]):
        say(opts.verbose, "  " + line)
    return {"workdir": workdir, "history": history, "predictions": pred, "network": net,
            "audit": stages["audit"], "config_json": run_info}
