"""What long work prints, and what it keeps quiet: a line when a stage starts and one
with its duration when it ends, durations in the unit a reader wants (s, min, h),
numbers and differences as text (None as 'n/a'). Used by the pipeline, the estimator,
the sweep and the commands, so every entrance reads the same."""
from __future__ import annotations

import contextlib
import time


def say(verbose, msg):
    """Print ``msg`` (flushed) unless ``verbose`` is 0."""
    if verbose:
        print(msg, flush=True)


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
