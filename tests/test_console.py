"""What a run prints, on a terminal and in a file: a progress bar only on a terminal
(in a file every frame and its control codes would stay), a line per epoch elsewhere,
and lines printed while a bar may be drawn starting a line of their own."""
import io

import pytest

from dgg_tf.core import console


class _Out(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty, expected", [(True, {0: 0, 1: 1, 2: 2}),
                                           (False, {0: 0, 1: 2, 2: 2})])
def test_a_bar_only_on_a_terminal(monkeypatch, tty, expected):
    monkeypatch.setattr("sys.stdout", _Out(tty))
    assert console.on_terminal() is tty
    assert {v: console.progress_verbose(v) for v in (0, 1, 2)} == expected


@pytest.mark.parametrize("tty, verbose, text", [(True, 1, "\nafter step 1\n"),
                                                (False, 1, "after step 1\n"),
                                                (True, 2, "after step 1\n"),
                                                (True, 0, "")])
def test_a_line_said_apart_starts_a_line_under_a_bar(monkeypatch, tty, verbose, text):
    out = _Out(tty)
    monkeypatch.setattr("sys.stdout", out)
    console.say_apart(verbose, "after step 1")
    assert out.getvalue() == text


def test_a_closed_or_plain_stdout_is_no_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout", object())
    assert console.on_terminal() is False
