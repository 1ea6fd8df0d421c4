"""The errors a run can end with that are the user's to fix, not bugs: every command
turns them into one ``error:`` line and exit code 2 (``cli.commands.run_main``)."""
from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad inputs)."""
