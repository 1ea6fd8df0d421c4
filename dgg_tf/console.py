"""What long work prints: a line when a stage starts and one with its duration when it
ends, and durations in the unit a reader wants (s, min, h). Used by the pipeline, the
estimator and the sweep, so every stage of every entrance reads the same."""
from __future__ import annotations

import contextlib
import time


def say(verbose, msg):
    """Print ``msg`` (flushed) unless ``verbose`` is 0."""
    if verbose:
        print(msg, flush=True)


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
