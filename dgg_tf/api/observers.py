"""What watches a DGG run from outside the in-memory core (``api.core``), each a Keras
callback: the console (progress bar, the early time estimate, one line per epoch),
the collapse watch, TensorBoard, and the run directory's files (``RunFiles``: the
checkpoint, history.csv and curves after every epoch). ``run_dgg`` attaches them all;
the estimator the console and the collapse watch."""
from __future__ import annotations

import datetime
import time

import keras
import numpy as np

from dgg_tf import report as rep
from dgg_tf.core.console import duration, on_terminal, say, say_apart
from dgg_tf.core.rundir import RunDir
from dgg_tf.numerics.weights import get_params
from dgg_tf.stages.dgg import format_record
from dgg_tf.train.checkpoint import optimizer_arrays
from dgg_tf.train.resumable import ResumableStage


class EpochSummary(keras.callbacks.Callback):
    """Prints each epoch's record, and after this run's first epoch the time left.

    The first epoch pays one-time costs (tracing and compiling the step and the
    full-pass evaluation) that later epochs do not, and on small data they are most of
    it. So the estimate is the epoch's steady cost: the median gap between its step
    ends times the steps, plus the epoch's time after its last step (the evaluation),
    at most the epoch's own seconds (``steady_epoch_seconds``)."""

    def __init__(self, verbose):
        super().__init__()
        self.verbose, self.first, self.ends = verbose, True, []

    def on_stages_end(self, run):
        self.history, self.total_epochs = run.history, run.config.epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.ends = [time.perf_counter()] if self.first else []

    def on_train_batch_end(self, batch, logs=None):
        if self.first:
            self.ends.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        record = self.history[-1]
        say(self.verbose, format_record(record))
        if self.first and epoch + 1 < self.total_epochs:
            self.ends.append(time.perf_counter())
            steady = steady_epoch_seconds(self.ends, record["seconds"])
            say(self.verbose, _time_left(epoch, self.total_epochs, record["seconds"], steady))
        self.first = False


def steady_epoch_seconds(marks, seconds):
    """An epoch's cost without its one-time costs, from ``marks``: the epoch's start,
    each step's end, then the epoch's end (``perf_counter`` times). The median gap
    between step ends (the first step, which traces, is left out) stands for every
    step; the time after the last step (the evaluation) is kept whole. At most
    ``seconds``, the epoch's measured time."""
    steps = np.diff(marks[1:-1])
    if len(steps) < 2:
        return seconds
    calls = len(marks) - 2
    steady = float(np.median(steps)) * calls + (marks[-1] - marks[-2])
    return min(seconds, steady)


def _time_left(epoch, total_epochs, seconds, steady):
    left = (total_epochs - epoch - 1) * steady
    finish = datetime.datetime.now() + datetime.timedelta(seconds=left)
    once = (f" ({duration(seconds - steady)} of it once only: tracing and compiling)"
            if seconds - steady > 0.1 * seconds else "")
    n = total_epochs - epoch - 1
    return (f"epoch {epoch + 1} took {duration(seconds)}{once}; the {n} epoch"
            f"{'s' if n > 1 else ''} left take{'' if n > 1 else 's'} about {duration(left)} "
            f"(done about {finish:%Y-%m-%d %H:%M})")


class EarlyEstimate(keras.callbacks.Callback):
    """Prints an estimate of the whole training from its first steps (the median of
    steps 2..``steps`` + 1 of this run: step 1 includes tracing), long before the first
    epoch ends (or not at all when the epoch is shorter: then ``EpochSummary``'s estimate
    after the epoch is the first); ``EpochSummary`` refines it after that epoch. Reads
    the clock only."""

    def __init__(self, verbose, steps=10):
        super().__init__()
        self.verbose, self.times, self.most = verbose, [], steps

    def on_stages_end(self, run):
        self.total = steps_left(run)
        self.steps = min(self.most, self.total // 2)      # a short run: half its steps

    def on_train_batch_begin(self, batch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.steps = 0          # too late: the epoch's own estimate comes now

    def on_train_batch_end(self, batch, logs=None):
        if not self.steps or len(self.times) > self.steps:
            return
        self.times.append(time.perf_counter() - self.t0)
        if len(self.times) == self.steps + 1 and self.steps:
            per = float(np.median(self.times[1:])) / max(self.model.steps_per_execution, 1)
            say_apart(self.verbose, f"estimate from the first steps: {per:.3f} s a step, about "
                 f"{duration(per * self.total)} for the {self.total} steps of training (plus a "
                 "full-pass evaluation per epoch)")


def steps_left(run):
    """The training steps of ``run`` from its first epoch not yet trained."""
    n, config = len(run.inputs.x), run.config
    return -(-n // config.batch_size) * (config.epochs - len(run.history))


def console(verbose):
    """The console's observers: Keras' progress bar (verbose 1, on a terminal only), the
    early estimate and one line per epoch. Keras adds its own bar after the callbacks it
    is given; given first, the bar ends its line before the epoch's line is printed."""
    if not verbose:
        return []           # their batch-end hooks would cost a wait on every step
    bar = [keras.callbacks.ProgbarLogger()] if verbose == 1 and on_terminal() else []
    return bar + [EarlyEstimate(verbose), EpochSummary(verbose)]


class RecordBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, given each epoch's whole record (loss terms, lr,
    ACC, NMI) rather than the progress bar's running loss."""

    def __init__(self, log_dir):
        super().__init__(log_dir, write_graph=False, update_freq="epoch", profile_batch=0)

    def on_stages_end(self, run):
        self.history = run.history

    def on_epoch_end(self, epoch, logs=None):
        record = {k: v for k, v in self.history[-1].items() if k not in ("epoch", "seconds")}
        super().on_epoch_end(epoch, record)


#: Seconds between two drawings of curves.png while a run trains. A drawing costs about
#: 0.2 s, up to 0.4 s the first in a process (``benchmarks/curves_time.py``, Intel Xeon);
#: drawn after every epoch, that is 5% of a full-MNIST epoch on an H200 today and a fifth
#: of one at 1.5 ms a step. history.csv, written after every epoch, has the same numbers.
CURVES_EVERY_S = 60.0


class RunFiles(keras.callbacks.Callback):
    """The run directory while the run goes: when the stages before training are done,
    config.json (from then on the directory holds a run), then the checkpoint (epoch 0)
    and the audit's report, or, for a resumed run, the files made to agree with its
    checkpoint again; after every epoch the checkpoint and history.csv, and curves.png
    at most every ``CURVES_EVERY_S`` seconds (and always at the end or at a stop).
    ``stage``: the run's checkpoint (``train.resumable.ResumableStage``, kind "dgg").
    ``audit_only``: the run stops after the audit, and keeps no checkpoint."""

    def __init__(self, run_dir: RunDir, stage: ResumableStage, audit_only=False):
        super().__init__()
        self.dir, self.stage, self.audit_only, self.run = run_dir, stage, audit_only, None
        self._plotted = None            # what curves.png shows now (its runs' repr)
        self._plotted_at = time.monotonic()

    def on_stages_end(self, run):
        self.run = run
        self.stage.start_clock()          # wall seconds: training's, as the core counts
        self.dir.write_record(run.record)
        if self.audit_only:
            return
        if not run.history:
            self.checkpoint()
            rep.write_report(self.dir.path, run.stages.audit)
        else:
            self.curves(final=True)

    def on_epoch_end(self, epoch, logs=None):
        self.checkpoint()
        self.curves()

    def checkpoint(self):
        run = self.run
        state = {"params": get_params(run.net), "optimizer": optimizer_arrays(run.net.optimizer),
                 "arrays": {"kmeans_labels": np.asarray(run.stages.kmeans_labels)},
                 "epoch": len(run.history), "history": run.history, **run.stages.summary()}
        self.stage.save(state)

    def report_run(self):
        """The run as the report sees it: name, variant, history, classifier ACC, and
        the full-pass ACC after the first steps."""
        run = self.run
        return {"name": self.dir.name,
                "variant": run.record.variant, "history": run.history,
                "classifier_acc": run.classifier_acc, "first_steps": run.stages.first_steps,
                "steps_per_epoch": rep.steps_per_epoch(run.record)}

    def curves(self, final=False):
        """history.csv, and curves.png when what it shows changed and either ``final``
        (the run's end or stop) or ``CURVES_EVERY_S`` have passed since the last drawing."""
        self.dir.write_history(self.run.history)
        shown = repr(runs := [self.report_run()])
        due = final or time.monotonic() - self._plotted_at >= CURVES_EVERY_S
        if shown != self._plotted and due:
            rep.plot_curves(self.dir.curves_png, runs)
            self._plotted, self._plotted_at = shown, time.monotonic()
