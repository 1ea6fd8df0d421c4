"""How a run starts: the timed warm-up before DGG training times the step's forward and
backward pass and changes nothing a run depends on (weights, optimizer state, the
seeded streams), so a run's history is the same with it or without it; and run_dgg's
options are declared once."""
import numpy as np
from test_fit import TINY, tiny_data

from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages import timing
from dgg_tf.stages.dgg import compile_dgg, train_dgg


def test_warm_up_times_without_changing_the_run():
    x, table, y = tiny_data()
    start = get_params(compile_dgg(DGGNetwork(TINY), TINY))
    plain, warmed = (compile_dgg(DGGNetwork(TINY), TINY) for _ in range(2))
    for net in (plain, warmed):
        set_params(net, start)
    seconds = timing.warmup_seconds(warmed, x, table, TINY, repeats=2)
    assert 0.0 < seconds < 60.0
    after = get_params(warmed)
    assert all(np.array_equal(after[k], start[k]) for k in start)
    assert int(warmed.optimizer.iterations.numpy()) == 0
    runs = [train_dgg(net, x, table, y, epochs=1, verbose=0) for net in (plain, warmed)]
    keys = [k for k in runs[0][0] if k != "seconds" and not k.startswith("peak")]
    assert [r[k] for r in runs[0] for k in keys] == [r[k] for r in runs[1] for k in keys]


def test_warm_up_only_where_printed_and_long_enough():
    net = DGGNetwork(TINY)
    n = timing.WARMUP_MIN_STEPS
    assert timing.should_warm_up(net, n, verbose=1)
    assert not timing.should_warm_up(net, n - 1, verbose=1)
    assert not timing.should_warm_up(net, n, verbose=0)


def test_run_dgg_options_are_declared_once(tmp_path):
    """run_dgg's options are RunOptions' fields: an unknown one is refused by name
    before any work (nothing is written)."""
    import dataclasses

    import pytest

    from dgg_tf.api.pipeline import RunOptions, run_dgg
    x, table, y = tiny_data()
    with pytest.raises(TypeError, match="unknown option.*verbosity.*the options are"):
        run_dgg(TINY, x, y, neighbors=table, weights={}, workdir=tmp_path / "run",
                verbosity=0)
    assert not (tmp_path / "run").exists()
    assert {"resume", "verbose", "probe_steps", "info"} <= {
        f.name for f in dataclasses.fields(RunOptions)}
