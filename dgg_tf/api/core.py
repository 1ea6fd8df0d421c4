"""A DGG run in memory: GMM init from K-means, classifier pretraining (and, when asked,
the discrepancy audit), then DGG training, on inputs the gate has checked
(``core.inputs.RunInputs``). It touches no disk: checkpoints, ``history.csv``, curves,
the console, TensorBoard and collapse warnings are observers that the caller attaches
(``run_dgg`` attaches them all; the estimator the console and the collapse watch).

    result = run_in_memory(config, inputs, record, observers=[...])

An observer is a Keras callback; one that also has ``on_stages_end(run)`` hears when
the stages before training are done (``run``: the ``Run`` below), before the first
step.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import time

import numpy as np

from dgg_tf import backend
from dgg_tf.audit import audit as measure_audit
from dgg_tf.core.collapse import classifier_acc
from dgg_tf.core.console import duration, on_terminal, say, say_apart, stage
from dgg_tf.core.metrics import cluster_acc, nmi
from dgg_tf.core.record import RunRecord
from dgg_tf.numerics.evaluation import predict
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params, library_versions, set_params
from dgg_tf.stages.dgg import compile_dgg, encode, fit_dgg
from dgg_tf.stages.initialise import init_gmm, pretrain_classifier
from dgg_tf.stages.timing import should_warm_up, warmup_seconds
from dgg_tf.stages.watch import first_steps_callback
from dgg_tf.train.checkpoint import restore_network
from dgg_tf.train.fit import steps_per_epoch


@dataclasses.dataclass
class Stages:
    """What the stages before training found; a checkpoint keeps it, so that a resumed
    run skips them."""
    init: dict
    classifier_history: list
    audit: dict | None
    kmeans_labels: np.ndarray
    first_steps: list = dataclasses.field(default_factory=list)

    def summary(self):
        """The JSON entries a checkpoint's state keeps (``kmeans_labels`` is an array)."""
        return {"init": self.init, "classifier_history": self.classifier_history,
                "audit": self.audit, "first_steps": self.first_steps}

    @classmethod
    def from_checkpoint(cls, state):
        return cls(init=state["init"], classifier_history=state["classifier_history"],
                   audit=state["audit"], kmeans_labels=state["arrays"]["kmeans_labels"],
                   first_steps=list(state.get("first_steps") or []))


@dataclasses.dataclass
class Run:
    """A run while it trains: what the observers see. ``history`` grows by one record
    per epoch; ``record`` is the run record (``core.record.RunRecord``)."""
    config: object
    inputs: object
    net: DGGNetwork
    stages: Stages
    history: list
    record: RunRecord

    @property
    def classifier_acc(self):
        return classifier_acc(self.stages.classifier_history)


@dataclasses.dataclass
class Resume:
    """Where a resumed run continues: a checkpoint's weights, optimizer state, stages,
    history and the wall seconds spent so far (``train.checkpoint``'s state)."""
    params: dict
    optimizer: list
    stages: Stages
    history: list
    wall_seconds: float = 0.0


@dataclasses.dataclass
class Options:
    """How the core runs (``run_dgg``'s ``RunOptions`` less what concerns files)."""
    verbose: int = 1
    audit: bool = False
    audit_only: bool = False
    audit_batches: int = 10
    audit_classifier_epochs: int = None
    strategy: object = None
    steps_per_execution: int = 1


@dataclasses.dataclass
class RunResult:
    """What a run found: the trained network, its epoch records, the run record, the
    final clusters of the training data, and the stages before training."""
    net: DGGNetwork
    history: list
    record: RunRecord
    predictions: np.ndarray | None
    stages: Stages


def start_record(config, inputs, info=None, out=None):
    """A new ``RunRecord``: the caller's ``info`` entries, then what the run is: seed,
    config, library versions, data size, neighbour table, weights, fingerprints, where
    its files go (``out``; None in memory), start time."""
    keep = ("source", "schedule", "stage", "command", "epochs", "metrics", "date", "format",
            "path")
    backend.set_precision(config.precision)   # its matrix products are part of the record
    return RunRecord(
        info=dict(info or {}), seed=config.seed, config=config.to_dict(),
        epochs=config.epochs, library_versions=library_versions(),
        n_samples=int(len(inputs.x)), neighbors=inputs.neighbors,
        weights_provenance={k: v for k, v in inputs.weights.items() if k in keep},
        out=os.path.abspath(out) if out else None, **inputs.fingerprints,
        started=datetime.datetime.now(datetime.timezone.utc).isoformat())


def report_purity(purity, config, verbose):
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


def build_dgg(config, params, strategy=None, steps_per_execution=1, verbose=1):
    """A compiled DGGNetwork holding the autoencoder weights (the rest keeps its init)."""
    backend.set_seed(config.seed)
    backend.set_precision(config.precision)
    with backend.strategy_scope(strategy):
        net = DGGNetwork(config)
        assigned = set_params(net, params, partial=True, source="weights")
        compile_dgg(net, config, steps_per_execution)
    kept = sorted({n.split("/")[0] for n in get_params(net)} - {n.split("/")[0] for n in assigned})
    say(verbose, f"weights: loaded {len(assigned)} arrays"
         + (f"; {', '.join(kept)} keep their initialisation" if kept else ""))
    return net


def initial_stages(net, inputs, config, opts: Options, kmeans=None) -> Stages:
    """GMM init from K-means, classifier pretraining and (optionally) the audit.
    ``kmeans``: the K-means result to use instead of computing it (``api.starts``)."""
    x, y, verbose = inputs.x, inputs.y, opts.verbose
    with stage(verbose, "GMM init (K-means on the encoder means)"):
        init = init_gmm(net, x, y, config, verbose=0, kmeans=kmeans)
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
    if opts.audit or opts.audit_only:
        say(verbose, f"audit: {opts.audit_batches} batches of {config.batch_size} x "
             f"{config.num_neighbors + 1} rows")
        with stage(verbose, "audit"):
            result = measure_audit(
                net, x, inputs.table, y, config, n_batches=opts.audit_batches,
                seed=config.seed, tables=inputs.tables, stored_purity=inputs.stored_purity,
                kmeans_labels=init["kmeans_labels"], classifier_init=cls_init,
                classifier_epochs=opts.audit_classifier_epochs,
                classifier_histories={config.classifier_pretrain_loss: cls_hist},
                weights_info=inputs.weights, verbose=verbose > 1)
    return Stages(init=summary, classifier_history=cls_hist, audit=result,
                  kmeans_labels=init["kmeans_labels"])


def record_stages(record, stages):
    """What the record keeps of the stages before training."""
    if stages.classifier_history:
        record.classifier = stages.classifier_history[-1]
    if stages.init:
        record.gmm_init = stages.init
    if stages.audit is not None:
        record.audit_seconds = stages.audit["setup"]["seconds"]


def run_in_memory(config, inputs, record, *, observers=(), resume: Resume = None,
                  options: Options = None) -> RunResult:
    """The whole run on checked ``inputs``: the stages before training (or those of
    ``resume``), then DGG training to ``config.epochs`` with ``observers`` (Keras
    callbacks) attached, then the final clusters. ``record`` (a ``RunRecord``) is
    filled in as the run goes; nothing is written."""
    opts = options or Options()
    net = build_dgg(config, inputs.params, opts.strategy, opts.steps_per_execution,
                    opts.verbose)
    if resume is not None:
        restore_network(net, resume.params, resume.optimizer or [])
        stages, history = resume.stages, list(resume.history)
    else:
        stages, history = initial_stages(net, inputs, config, opts), []
        record_stages(record, stages)
    run = Run(config, inputs, net, stages, history, record)
    for o in observers:
        if hasattr(o, "on_stages_end"):
            o.on_stages_end(run)
    if opts.audit_only:
        return RunResult(net, history, record, None, stages)
    t0 = time.time()
    _train(run, observers, opts.verbose)
    wall = (resume.wall_seconds if resume else 0.0) + time.time() - t0      # training's
    pred = finish_run(run, wall)
    return RunResult(net, history, record, pred, stages)


def _train(run, observers, verbose):
    """DGG training from the first epoch not yet in ``run.history``; a fresh run with
    labels also records the full-pass ACC after ``inputs.probe_steps``."""
    net, inputs, start = run.net, run.inputs, len(run.history)
    total = steps_per_epoch(len(inputs.x), net.config.batch_size) * (net.config.epochs - start)
    probes = []
    if start == 0 and inputs.probe_steps and inputs.y is not None:
        probes.append(first_steps_callback(run.stages.first_steps, inputs.x, inputs.y,
                                           inputs.probe_steps, run.classifier_acc,
                                           say=lambda m: say_apart(verbose, m)))
    if should_warm_up(net, total, verbose):
        per = warmup_seconds(net, inputs.x, inputs.table, net.config)
        say(verbose, f"estimate before training (a timed warm-up: one batch's forward and "
                     f"backward pass): about {per:.3f} s a step, {duration(per * total)} for "
                     f"the {total} steps; refined from the first steps and after epoch 1")
    where = f", out {run.record.out}" if run.record.out else ""
    say(verbose, f"DGG training: epochs {start + 1}..{net.config.epochs}{where}")
    with stage(verbose, "DGG training"):
        # Keras' bar only on a terminal: elsewhere EpochSummary's line per epoch is the log
        fit_dgg(net, inputs.x, inputs.table, inputs.y, history=run.history,
                initial_epoch=start, callbacks=list(observers) + probes,
                verbose=1 if verbose == 1 and on_terminal() else 0)


def finish_run(run, wall_seconds):
    """The final clusters of the training data, and what the record keeps of the end."""
    pred = predict(run.net, run.inputs.x)
    if run.stages.first_steps:
        run.record.first_steps = run.stages.first_steps
    run.record.finished = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                              "epochs": len(run.history), "wall_seconds": round(wall_seconds, 1),
                              "clusters_used": int(len(np.unique(pred)))}
    y = run.inputs.y
    if y is not None:
        run.record.finished.update(acc=cluster_acc(y, pred), nmi_max=nmi(y, pred, "max"),
                                      nmi_arithmetic=nmi(y, pred))
    return pred
