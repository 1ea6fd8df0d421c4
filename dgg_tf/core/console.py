"""What long work prints, and what it keeps quiet: a line when a stage starts and one
with its duration when it ends, durations in the unit a reader wants (s, min, h),
numbers and differences as text (None as 'n/a'). Used by the pipeline, the estimator,
the sweep and the commands, so every entrance reads the same."""
from __future__ import annotations

import contextlib
import sys
import time


def say(verbose, msg):
    """Print ``msg`` (flushed) unless ``verbose`` is 0."""
    if verbose:
        print(msg, flush=True)


def on_terminal():
    """Whether stdout is a terminal: only there do progress bars redraw themselves;
    written to a file or a pipe, every frame (and its control codes) would stay."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):        # replaced or closed by the caller
        return False


def progress_verbose(verbose):
    """Keras' ``verbose`` for a ``fit`` under our ``verbose``: 0 stays 0; otherwise a bar
    (1) on a terminal and a line per epoch (2) anywhere else."""
    if not verbose:
        return 0
    return 1 if verbose == 1 and on_terminal() else 2


def say_apart(verbose, msg):
    """``say`` for a line printed while a progress bar may be drawn (verbose 1 on a
    terminal): it starts a line of its own instead of joining the bar's."""
    say(verbose, ("\n" if verbose == 1 and on_terminal() else "") + msg)


def number(v, digits=4):
    """``v`` with ``digits`` decimals, or 'n/a' for a value not there (None)."""
    return "n/a" if v is None else f"{v:.{digits}f}"


def signed(v, digits=4):
    """``number`` with its sign always shown (a difference)."""
    return "n/a" if v is None else f"{v:+.{digits}f}"


def duration(seconds):
    """``seconds`` as '12.3 s', '14 min' or '2.5 h'."""
    return (f"{seconds / 3600:.1f} h" if seconds > 5400 else
            f"{seconds / 60:.0f} min" if seconds > 90 else f"{seconds:.1f} s")


@contextlib.contextmanager
def stage(verbose, name):
    """Print one line when the stage ``name`` starts and one with its duration when it
    ends, so that no stage of a long run is silent."""
    say(verbose, f"{name}: started")
    t0 = time.time()
    yield
    say(verbose, f"{name}: done in {duration(time.time() - t0)}")
