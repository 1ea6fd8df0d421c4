"""The reproduce/ scripts' command lines: a bad argument is refused with exit code 2 and
one ``error:`` line, before Keras, TensorFlow or JAX is imported (well under 2 s: about
0.2 s measured on 2 shared cores); ``sweep.py`` without ``--protocol`` lists the
protocols; ``--subset`` means the same everywhere; every option has help text."""
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["mnist", "sweep", "digits", "blobs", "first_step", "pretrain_mnist",
           "siamese_mnist"]

#: Runs a script as ``python SCRIPT ARGS`` would, then writes which heavy packages it
#: loaded to the file named by $DGG_LOADED.
WRAPPER = """
import json, os, runpy, sys
script, sys.argv = sys.argv[1], sys.argv[1:]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as e:
    code = e.code
with open(os.environ["DGG_LOADED"], "w") as f:
    json.dump([m for m in ("keras", "tensorflow", "jax") if m in sys.modules], f)
sys.exit(code)
"""

#: (script, arguments, what the one error line says)
BAD = [
    ("mnist", ["--epochs", "-3"], "argument --epochs: must be at least 1, got -3"),
    ("mnist", ["--subset", "0"], "argument --subset: must be at least 1, got 0"),
    ("mnist", ["--verbose", "5"], "argument --verbose: invalid choice"),
    ("mnist", ["--set", "sigma=0"], "sigma must be a finite number > 0"),
    ("mnist", ["--probe-steps", "1,x"], "expects steps >= 1 separated by commas"),
    ("sweep", [], "--protocol is required; choose one of: cpu ("),
    ("sweep", ["--protocol", "tiny", "--subset", "0"], "argument --subset: must be at least 1"),
    ("sweep", ["--protocol", "cpu", "--jobs", "0"], "argument --jobs: must be at least 1"),
    ("sweep", ["--protocol", "cpu", "--set", "prior=bogus"], "choose one of code, paper"),
    ("sweep", ["--protocol", "tiny", "--checkpoint-every", "3"],
     "--checkpoint-every applies to programs of cells: add --cells-per-program N"),
    ("sweep", ["--protocol", "tiny", "--cells-per-program", "2", "--checkpoint-every", "0"],
     "argument --checkpoint-every: must be at least 1, got 0"),
    ("digits", ["--seeds", "-1"], "argument --seeds: must be at least 0, got -1"),
    ("digits", ["--config", "no/such.json"], "--config no/such.json"),
    ("blobs", ["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    ("blobs", ["--set", "prior=bogus"], "choose one of code, paper"),
    ("first_step", ["--subset", "0"], "argument --subset: must be at least 1, got 0"),
    ("first_step", ["--seed", "x"], "argument --seed: expects an integer, got 'x'"),
    ("pretrain_mnist", ["--subset", "0"], "argument --subset: must be at least 1, got 0"),
    ("pretrain_mnist", ["--set", "no_such=1"], "unknown setting"),
    ("siamese_mnist", ["--subset", "-5"], "argument --subset: must be at least 1, got -5"),
    ("siamese_mnist", ["--epochs", "-1"], "argument --epochs: must be at least 0, got -1"),
]

#: The slowest refusal measured, for the report at the end of the module.
TIMES = {}


def _refuse(script, argv, tmp_path):
    loaded = tmp_path / "loaded.json"
    env = {**os.environ, "DGG_LOADED": str(loaded),
           "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER,
                           os.path.join(ROOT, "reproduce", f"{script}.py"), *argv],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return done, time.perf_counter() - start, json.loads(loaded.read_text())


@pytest.mark.parametrize("script, argv, says", BAD,
                         ids=[f"{s}:{' '.join(a) or 'no-args'}" for s, a, _ in BAD])
def test_bad_argument_refused_fast_before_keras(script, argv, says, tmp_path):
    done, seconds, loaded = _refuse(script, argv, tmp_path)
    TIMES[f"{script} {' '.join(argv)}"] = seconds
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert done.stdout == ""
    assert loaded == [], f"imported {loaded} before refusing"
    assert seconds < 3.0, f"{seconds:.2f} s"                 # measured: about 0.2 s
    assert os.listdir(tmp_path) == ["loaded.json"]            # nothing written


def test_sweep_without_protocol_lists_every_protocol(tmp_path):
    done, _, _ = _refuse("sweep", ["--dry-run"], tmp_path)
    assert done.returncode == 2
    for name in ("cpu", "converge", "full", "tiny"):
        assert f"{name} (" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_sweep_dry_run_plans_without_starting_keras(tmp_path):
    """--dry-run prints the plan and its time without starting Keras (about 0.3 s, not
    the 4-5 s of TensorFlow's start) and writes nothing."""
    done, seconds, loaded = _refuse("sweep", ["--protocol", "cpu", "--dry-run"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "sweep: 10 configurations, 34 cells, 10000 images, 15 epochs" in done.stdout
    assert loaded == [] and seconds < 3.0, (loaded, seconds)
    assert os.listdir(tmp_path) == ["loaded.json"]


def _parser_of(script, monkeypatch):
    """The argparse parser a script builds, caught at its ``parse_args``."""
    from dgg_tf.cli import commands

    class Caught(Exception):
        pass

    seen = []

    def catch(self, *args, **kwargs):
        seen.append(self)
        raise Caught
    monkeypatch.setattr(commands.CommandParser, "parse_args", catch)
    spec = importlib.util.spec_from_file_location(
        f"script_{script}", os.path.join(ROOT, "reproduce", f"{script}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(Caught):
        module.main([])
    return seen[0]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_option_has_help_and_subset_means_the_same(script, monkeypatch):
    parser = _parser_of(script, monkeypatch)
    missing = [a.option_strings[0] for a in parser._actions
               if a.option_strings and not (a.help or "").strip()]
    assert not missing, f"{script}: options without help: {missing}"
    options = {o: a for a in parser._actions for o in a.option_strings}
    if "--subset" in options:
        subset = options["--subset"]
        assert subset.default is None and subset.help.startswith("use the first N images")
        assert subset.type("5") == 5
        with pytest.raises(Exception, match="at least 1"):
            subset.type("0")
    for name in ("--data", "--weights"):
        if name in options:
            assert "default" in options[name].help.lower(), (script, name)
    if "--data" in options:
        help_text = options["--data"].help
        order = [help_text.index(w) for w in ("$DGG_DATA", "../shared/data/mnist",
                                              "Keras cache", "download")]
        assert order == sorted(order), help_text


def test_measured_times_are_reported():
    """Not a check: prints the refusals' wall times (run with -s to see them)."""
    if TIMES:
        print("\nargument errors, wall seconds: " + ", ".join(
            f"{k}: {v:.2f}" for k, v in sorted(TIMES.items(), key=lambda kv: -kv[1])))
