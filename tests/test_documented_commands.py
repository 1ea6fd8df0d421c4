"""Every documented command runs. Each Python script under reproduce/ and benchmarks/
answers --help (exit 0, usage printed) and offers every option that the docs show for
it; each runs for real at its smallest size, in a subprocess, with its outputs under
pytest's tmp_path (the working directory too, so that no default path reaches the
repository), and must exit 0, write its files and print its key line.

``ROWS`` is the table, one row per command line (or a few that share one folder, as a
run and its --resume). To add a command, add a row. The docs are read at test time
(``documented_options``: every ``python reproduce/X.py ...`` or ``python
benchmarks/X.py ...`` line of README.md, docs/, pretrained/ and the results READMEs,
the scripts' own usage lines and benchmarks/*.sh); an option found there must appear in
some row of that script, or in ``NOT_EXERCISED`` with the reason. The shell scripts
(device_check.sh, device_prepare.sh, full_cell.sh) and device_summary.py's real runs
are tests/test_device_scripts.py's.

Rows marked ``heavy`` run only with ``DGG_HEAVY_COMMANDS=1``: the benchmarks, which
trace the full-size step in fresh processes (15-20 s each at their smallest on 2 idle
cores; step_rounding.py, five processes, over a minute), and the JAX digits example
(JAX compiles every stage). Rows that need MNIST are skipped when it is not on this
machine (nothing may download); rows that need JAX, when JAX is not installed.
Measured on 2 idle cores (AMD EPYC, 2026-12-04): the default rows 135 s one at a time,
82 s under ``-n 2``; the heavy rows 171 s more (step_rounding 58 s of it).

Documented, and not exercised for the reason given (besides ``NOT_EXERCISED``):
- ``reproduce/mnist.py --strategy mirrored --steps-per-execution 50`` (README, "on
  GPUs"): each option runs here (row mnist-fresh-then-resume: mirrored in the fresh
  run, 3 steps per execution in its resume), the two together not:
  on TensorFlow, MirroredStrategy over 2 devices (--virtual-cpus 2) with more than one
  step per execution fails inside Keras 3.15's multi-step loop ("You must feed a value
  for placeholder tensor ... cond/Placeholder", an InvalidArgumentError from
  ``multi_step_on_iterator``); with one device, or on JAX, the pair runs. A multi-GPU
  TensorFlow machine, which this project has not had, would tell whether GPUs fail too.
- the full sizes (300 epochs, 70000 images, the ``cpu``/``converge``/``full`` sweep
  protocols, the parity check on full MNIST): hours on a CPU, or a GPU; the rows run
  the same code paths at 300 images and 1-2 epochs.
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from dgg_tf.cli.commands import mnist_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(os.path.relpath(p, ROOT) for pattern in ("reproduce/*.py", "benchmarks/*.py")
                 for p in glob.glob(os.path.join(ROOT, pattern)))
HEAVY = os.environ.get("DGG_HEAVY_COMMANDS") == "1"
MNIST = mnist_source()
HAS_JAX = importlib.util.find_spec("jax") is not None
HAS_TF = importlib.util.find_spec("tensorflow") is not None
# the DGG stages at their smallest: one K-means restart, one classifier epoch, one
# audit batch (reproduce/mnist.py and sweep.py take the same --set values)
SMALL = ["--set", "classifier_epochs=1", "--set", "kmeans_n_init=1"]
AUDIT = ["--audit-batches", "1", "--audit-classifier-epochs", "1"]
# a fresh 1-epoch paper run on 300 images; its --resume must repeat every setting
PAPER_300 = ["--variant", "paper", "--set", "sigma=5", "--set", "lr_schedule=nominal",
             "--subset", "300", "--subset-neighbors", "raw", *SMALL, *AUDIT]
# reproduce/digits.py at its smallest: one epoch per stage, a narrow network, and the
# one-stage DEC pretraining (the default 5-stage schedule traces 5 fits; its code path is
# tests/test_pretrain.py's)
DIGITS_CONFIG = {"description": "the smallest run of reproduce/digits.py (a test)",
                 "estimator": {"n_clusters": 10, "variant": "code", "epochs": 1,
                               "pretrain_epochs": 1, "classifier_epochs": 1},
                 "config_overrides": {"encoder_dims": [16, 16, 32], "batch_size": 50,
                                      "kmeans_n_init": 1, "pretrain_schedule": "dec",
                                      "classifier_pretrain_loss": "cross_entropy"},
                 "neighbors": "knn", "seeds": [0, 1]}


@dataclasses.dataclass
class Step:
    """One command line: ``argv`` after ``python SCRIPT`` ({tmp}: the test's folder,
    {mnist}: the MNIST folder, {root}: the repository); the exit code, files that must
    exist and that must not (relative to {tmp}), and text the output must hold."""
    argv: list
    rc: int = 0
    files: tuple = ()
    absent: tuple = ()
    says: tuple = ()


@dataclasses.dataclass
class Row:
    id: str
    script: str
    steps: list
    needs: tuple = ()          # "mnist", "jax", "tensorflow"
    heavy: bool = False


ROWS = [
    # README (quick start, step by step, a quick look), reproduce/results/mnist-cpu and
    # first-step: a fresh run (--resume-or-start on an empty folder starts one), then
    # its --resume with more epochs
    Row("mnist-fresh-then-resume", "reproduce/mnist.py", [
        Step([*PAPER_300, "--epochs", "1", "--probe-steps", "1,2", "--resume-or-start",
              "--strategy", "mirrored", "--virtual-cpus", "2", "--tensorboard", "{tmp}/tb",
              "--out", "{tmp}/run"],
             files=("run/config.json", "run/history.csv", "run/model.h5",
                    "run/predictions.npy", "run/curves.png", "run/report.md",
                    "run/report.json", "run/checkpoint.npz", "tb/train"),
             says=("data: 300 images from", "neighbours: rebuilt for 300 samples: exact "
                   "100-NN on the RAW INPUTS", "after DGG step 2: full-pass ACC",
                   "done: 1 epochs", "reading the probes: DGG's first Adam step")),
        Step([*PAPER_300, "--epochs", "2", "--resume", "--drop-checkpoint", "--verbose", "2",
              "--steps-per-execution", "3", "--out", "{tmp}/run"],
             files=("run/model.h5", "run/history.csv"), absent=("run/checkpoint.npz",),
             says=("resuming from", "epoch=2 loss=", "done: 2 epochs",
                   "(--drop-checkpoint); model.h5 keeps the trained network")),
    ], needs=("mnist",)),
    # README: the report alone; the shipped Siamese network's neighbours inside a subset
    Row("mnist-audit-only", "reproduce/mnist.py", [
        Step(["--variant", "code", "--audit-only", "--subset", "300", "--data", "{mnist}",
              "--backend", "tensorflow", "--seed", "1", *SMALL, *AUDIT, "--verbose", "0",
              "--out", "{tmp}/audit"],
             files=("audit/config.json", "audit/report.md", "audit/report.json"),
             absent=("audit/model.h5", "audit/history.csv"),
             says=("neighbours: rebuilt for 300 samples: the Siamese embedding",)),
    ], needs=("mnist", "tensorflow")),
    # README step 1, pretrained/README.md (the DEC schedule, mixed_bfloat16)
    Row("pretrain_mnist-dec-mixed_bfloat16", "reproduce/pretrain_mnist.py", [
        Step(["--out", "{tmp}/ae.h5", "--data", "{mnist}", "--schedule", "dec",
              "--precision", "mixed_bfloat16", "--seed", "0", "--subset", "300",
              "--init", "{root}/pretrained/mnist_ae.h5", "--set", "dec_epochs=1",
              "--set", "kmeans_n_init=1"],
             files=("ae.h5", "ae.h5.ckpt.npz"), says=("wrote", "K-means(n_init=1) ACC=")),
    ], needs=("mnist",)),
    # README step 2, pretrained/README.md; on JAX (README, Backends: every script takes
    # --backend), the default tier's one JAX run, float32 (bfloat16 is slow on XLA's CPU)
    Row("siamese_mnist-jax", "reproduce/siamese_mnist.py", [
        Step(["--backend", "jax", "--data", "{mnist}", "--weights",
              "{root}/pretrained/mnist_ae.h5", "--epochs", "1", "--precision", "float32",
              "--seed", "0", "--subset", "300", "--out-weights", "{tmp}/s.h5",
              "--out-table", "{tmp}/t.npz", "--verbose", "2", "--set", "kmeans_n_init=1"],
             files=("s.h5", "t.npz", "t_nearest.npz"),
             says=("data: MNIST train+test", "wrote", "(random_top100, shape (300, 41))")),
    ], needs=("mnist", "jax")),
    # README (Sweeps), reproduce/results/sweep-cpu*, device-h200, benchmarks/*.sh: the
    # tiny protocol cut to one cell
    Row("sweep-tiny", "reproduce/sweep.py", [
        Step(["--protocol", "tiny", "--configs", "code", "--seeds", "1", "--flip-seeds", "1",
              "--subset", "300", "--epochs", "1", "--subset-neighbors", "raw", "--precision",
              "float32", "--data", "{mnist}", "--jobs", "1", *SMALL, "--out", "{tmp}/sweep"],
             files=("sweep/plan.json", "sweep/sweep.json", "sweep/sweep.md",
                    "sweep/sweep.png", "sweep/sweep-curves.png",
                    "sweep/runs/code/seed-0/history.csv"),
             says=("sweep: 1 configurations, 1 cells, 300 images", "[1/1] code seed 0: ACC",
                   "wrote")),
    ], needs=("mnist",)),
    # README (Sweeps: the converge study and --with-best), reproduce/results/converge-cpu
    Row("sweep-dry-run", "reproduce/sweep.py", [
        Step(["--protocol", "converge", "--with-best", "code+cross_entropy+warmup",
              "--grid", "diagnostic", "--dry-run", "--out", "{tmp}/planned"],
             absent=("planned",),
             says=("sweep: 9 configurations, 20 cells, 5000 images, 100 epochs",)),
    ]),
    # README (Use on your own data), reproduce/results/digits: a config of one epoch per
    # stage and a narrow network ({tmp}/digits.json, DIGITS_CONFIG)
    Row("digits", "reproduce/digits.py", [
        Step(["--config", "{tmp}/digits.json", "--seeds", "0", "--verbose", "0",
              "--out", "{tmp}/digits"],
             files=("digits/results.json", "digits/runs.json"),
             says=("seed 0: dgg ACC=", "wall time")),
    ]),
    # README (Backends): the JAX example; JAX compiles every stage (19 s idle, 56 s busy)
    Row("digits-jax", "reproduce/digits.py", [
        Step(["--backend", "jax", "--config", "{tmp}/digits.json", "--seeds", "0",
              "--verbose", "0", "--out", "{tmp}/digits"],
             files=("digits/results.json", "digits/runs.json"),
             says=("seed 0: dgg ACC=", "wall time")),
    ], needs=("jax",), heavy=True),
    # reproduce/results/blobs: the diagnosis (repaired), the documented rate; autoencoder
    # and K-means made small through --set
    Row("blobs-diagnose-steps", "reproduce/blobs.py", [
        Step(["--seeds", "0", "--epochs", "1", "--diagnose-steps", "2",
              "--set", "learning_rate=2e-6", "--set", "encoder_dims=16,16,32",
              "--set", "pretrain_schedule=dec", "--set", "kmeans_n_init=1",
              "--out", "{tmp}/blobs"],
             files=("blobs/results.json",),
             says=("seed 0 (", "GMM std after init", "step 2: loss",
                   "after the step: full-pass ACC")),
    ]),
    # README (Results), reproduce/results/first-step
    Row("first_step-mixed_bfloat16", "reproduce/first_step.py", [
        Step(["--subset", "300", "--precision", "mixed_bfloat16", "--variant", "code",
              "--seed", "0", "--data", "{mnist}", "--weights", "{root}/pretrained/mnist_ae.h5"],
             says=("300 images, code preset, mixed_bfloat16, seed 0",
                   "before the first step: full-pass ACC", "with the encoder as before",
                   "Adam's first update")),
    ], needs=("mnist",)),
    # README (Speed, Backends), benchmarks/device_check.sh. The benchmarks trace the
    # full-size step (and a fit epoch) in fresh processes: 15-20 s each at their
    # smallest on 2 idle cores, so they are heavy
    Row("step_time", "benchmarks/step_time.py", [
        Step(["--steps", "1", "--epoch-samples", "100", "--precision", "float32"],
             says=("float32: step", "all-in", "matrix products alone")),
    ], needs=("tensorflow",), heavy=True),
    Row("step_time-jax-side-by-side", "benchmarks/step_time.py", [
        Step(["--backend", "jax", "--steps", "1", "--epoch-samples", "100",
              "--precision", "float32"],
             says=("jax: ", "tensorflow: ", "jax / tensorflow, float32:")),
    ], needs=("jax", "tensorflow"), heavy=True),
    # benchmarks/device_check.sh's call: JAX alone
    Row("step_time-jax-alone", "benchmarks/step_time.py", [
        Step(["--backend", "jax", "--alone", "--steps", "1", "--epoch-samples", "0",
              "--precision", "float32"],
             says=("jax: ", "float32: step")),
    ], needs=("jax",), heavy=True),
    # README (Speed)
    Row("epoch_time", "benchmarks/epoch_time.py", [
        Step(["--samples", "100", "--steps", "1", "--precision", "float32",
              "--steps-per-execution", "1"],
             says=("float32: ", "s per step over a 1-step epoch through fit", "ratio")),
    ], heavy=True),
    # docs/speed.md, docs/run-directory.md: matplotlib alone, a second or two
    Row("curves_time", "benchmarks/curves_time.py", [
        Step(["--epochs", "1", "3", "--repeats", "1"],
             says=("cpu: ", "   3 epochs: median ")),
    ]),
    Row("knn_mnist", "benchmarks/knn_mnist.py", [
        Step(["--data", "{mnist}", "--subset", "3000", "--k", "10", "--block-size", "1024",
              "--verify", "5"],
             says=("knn: N=3000 D=784 k=10", "spot check: 5/5 rows identical")),
    ], needs=("mnist",)),
    # README (Backends), reproduce/results/device-h200 (--device-check: the paths without
    # TensorFlow): JAX's step against float64 on 300 images, and no float32 reference
    # path among --paths (the band line says so)
    Row("real_data_parity-device-check", "benchmarks/real_data_parity.py", [
        Step(["--device-check", "--paths", "jax", "--cases", "code-first300", "--steps", "5",
              "--data", "{mnist}", "--out", "{tmp}/parity.txt"],
             files=("parity.txt",),
             says=("code-first300: distance from float64", "band              none")),
    ], needs=("mnist", "jax"), heavy=True),
    # README (Backends)
    Row("step_rounding", "benchmarks/step_rounding.py", [
        Step(["--preset", "code"], says=("code preset, 3 steps", "jax       vs float64")),
    ], needs=("jax", "tensorflow"), heavy=True),
]

#: Documented options that no row exercises: {script: {option: why}}.
NOT_EXERCISED = {
    "reproduce/mnist.py": {
        "--neighbors": "a table of the run's N rows; the shipped one is for 70000 images "
                       "(hours); tests/test_reproduce.py passes tables in process",
    },
    "reproduce/pretrain_mnist.py": {
        "--resume": "a second process (8 s); tests/test_pretrain_siamese_scripts.py resumes it",
    },
    "reproduce/siamese_mnist.py": {
        "--resume": "a second process; tests/test_pretrain_siamese_scripts.py checks it",
    },
    "reproduce/sweep.py": {
        "--weights": "the shipped autoencoder is the default; a sweep of other weights "
                     "is the same code path",
        "--neighbors": "the 70000-image table: protocols without a subset (hours)",
        "--cells-per-program": "tests/test_sweep_programs.py runs the program mode in "
                               "process, against one cell a process, and its resume",
        "--checkpoint-every": "tests/test_sweep_programs.py's stopped program saves by it; "
                              "tests/test_device_scripts.py passes it through the sweep",
    },
    "reproduce/digits.py": {
        "--n-init": "DGG(n_init) is tests/test_estimator.py's and test_sweep_programs.py's; "
                    "the script's summary of it is tests/test_digits_n_init.py's",
    },
    "benchmarks/device_summary.py": {
        "*": "its real runs are tests/test_device_scripts.py's",
    },
    "benchmarks/fused_update.py": {
        "*": "times networks of three sizes, each in two processes (minutes); the two "
             "update paths it compares are tests/test_optimizers.py's; its --help is checked",
    },
    "benchmarks/digits_time.py": {
        "*": "times reproduce/digits.py of two checkouts side by side (minutes); its "
             "--help is checked",
    },
    "benchmarks/cells_probe.py": {
        "*": "JAX only; tests/test_cells_probe.py runs it at its smallest with every "
             "documented option (--small --check --cells --steps --scan --budget "
             "--precision); --switch and --engine are measurements at a width that takes "
             "minutes on this CPU (docs/speed.md), their code the same steps",
    },
}


def documented_options():
    """{script: set of --options} from every documented command line: ``python
    reproduce/X.py ...`` or ``python benchmarks/X.py ...`` in README.md, docs/,
    pretrained/README.md, the results READMEs, benchmarks/*.sh and the scripts' own
    usage lines. A command goes on over the next line when the line ends in a
    backslash, inside an unclosed inline code span, or when the next line starts with
    ``[`` or ``--`` (a usage line's continuation)."""
    sources = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "pretrained", "README.md")]
    sources += glob.glob(os.path.join(ROOT, "docs", "*.md"))
    sources += glob.glob(os.path.join(ROOT, "reproduce", "results", "*", "README.md"))
    sources += glob.glob(os.path.join(ROOT, "benchmarks", "*.sh"))
    sources += [os.path.join(ROOT, s) for s in SCRIPTS]
    command = re.compile(r"python3? ((?:reproduce|benchmarks)/\w+\.py)")
    found = {}
    for path in sources:
        lines = open(path).read().splitlines()
        for i, line in enumerate(lines):
            for match in command.finditer(line):
                text = line[match.end():]
                open_code = line[:match.start()].count("`") % 2 == 1
                if open_code and "`" in text:
                    text, open_code = text[:text.index("`")], False
                j = i
                while j + 1 < len(lines) and (text.rstrip().endswith("\\") or open_code or
                                              lines[j + 1].lstrip().startswith(("[", "--"))):
                    j += 1
                    more = lines[j]
                    if open_code and "`" in more:
                        more, open_code = more[:more.index("`")], False
                    text += " " + more
                opts = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)) - {"--help"}
                found.setdefault(match.group(1), set()).update(opts)
    return found


def _exercised(script):
    return {a for row in ROWS if row.script == script for step in row.steps
            for a in step.argv if a.startswith("--")}


def _env():
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}


def _run(script, argv, cwd, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *argv], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_usage_and_every_documented_option(script, tmp_path):
    done = _run(script, ["--help"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("usage:"), done.stdout[:500]
    documented = documented_options().get(script, set())
    missing = sorted(o for o in documented if o not in done.stdout)
    assert not missing, f"{script}: documented, and not in --help: {missing}"
    skipped = NOT_EXERCISED.get(script, {})
    if "*" in skipped:
        return
    reasons = {k.split()[0] for k in skipped}
    untested = sorted(documented - _exercised(script) - reasons)
    assert not untested, (f"{script}: documented options in no row of ROWS and not in "
                          f"NOT_EXERCISED: {untested}")


def test_every_script_has_a_row_or_a_reason():
    covered = {row.script for row in ROWS} | {s for s, why in NOT_EXERCISED.items() if "*" in why}
    assert sorted(set(SCRIPTS) - covered) == []


def _skip_reason(row):
    if row.heavy and not HEAVY:
        return "heavy (a minute or more on 2 cores): set DGG_HEAVY_COMMANDS=1"
    for need, have in (("mnist", MNIST), ("jax", HAS_JAX), ("tensorflow", HAS_TF)):
        if need in row.needs and not have:
            return f"needs {need}, which this machine does not have"
    return None


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_documented_command_runs(row, tmp_path):
    reason = _skip_reason(row)
    if reason:
        pytest.skip(reason)
    (tmp_path / "digits.json").write_text(json.dumps(DIGITS_CONFIG))
    fill = {"tmp": str(tmp_path), "mnist": MNIST or "", "root": ROOT}
    for step in row.steps:
        argv = [a.format(**fill) for a in step.argv]
        done = _run(row.script, argv, tmp_path)
        output = done.stdout + done.stderr
        where = f"python {row.script} {' '.join(argv)}\n--- output (end) ---\n{output[-4000:]}"
        assert done.returncode == step.rc, where
        for name in step.files:
            assert (tmp_path / name).exists(), f"{name} missing after {where}"
        for name in step.absent:
            assert not (tmp_path / name).exists(), f"{name} should not exist after {where}"
        for text in step.says:
            assert text in output, f"{text!r} not printed by {where}"
        if step.rc == 2:
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "Traceback" not in done.stderr, where
    leftovers = [p for p in ("runs", "pretrained") if (tmp_path / p).exists()]
    assert not leftovers, f"default output folders written: {leftovers}"


def test_parity_report_without_a_float32_reference_path():
    """``real_data_parity.py --paths tensorflow jax`` (its usage line) picks no float32
    reference path: the report says there is no band instead of failing."""
    spec = importlib.util.spec_from_file_location(
        "real_data_parity", os.path.join(ROOT, "benchmarks", "real_data_parity.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import numpy as np
    start = {"w": np.zeros(3, np.float32)}
    saved = range(1, 6)          # every step the report may read (parity.SAVED)
    step = {0: start, **{s: {"w": np.full(3, 0.002 * s, np.float32)} for s in saved}}
    near = {0: start, **{s: {"w": np.full(3, 0.002 * s + 1e-6, np.float32)} for s in saved}}
    lines = module.report("code", {"float64": step, "tensorflow": near, "jax": near})
    assert lines[-1].split() == ["band", "none:", "no", "float32", "reference", "path",
                                 "among", "--paths"]
    assert lines[1].split()[0] == "tensorflow" and lines[2].split()[0] == "jax"
