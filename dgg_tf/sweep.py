"""A sweep: named configurations x seeds, each cell an ordinary run directory of
``pipeline.run_dgg`` (audit off) under one sweep directory:

    SWEEP/plan.json            protocol, configurations, seeds, weights, neighbours
    SWEEP/inputs.npz           the data, labels and neighbour tables every cell uses
    SWEEP/runs/NAME/seed-S/    one run directory per cell
    SWEEP/logs/NAME-seed-S.log each cell's console output
    SWEEP/sweep.json, sweep.md, sweep.png   (``dgg_tf.sweep_summary``)

Every configuration is the code preset plus overrides: ``code``; ``paper``; and one
switch flipped at a time (``FLIPS``). A cell that finished is skipped, a killed one is
resumed from its last checkpoint (``run_dgg(resume=True)``). Cells run in
subprocesses (``python -m dgg_tf.sweep SWEEP NAME SEED``), ``jobs`` at a time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from .config import PRESETS, DGGConfig

#: One switch flipped from the code's value, per configuration that flips one: the
#: switch, its other value, and the configuration it is compared with.
FLIPS = {
    "neighbor_selection=nearest": ({"neighbor_selection": "nearest"}, "code"),
    "classifier_input=sample": ({"classifier_input": "sample"}, "code"),
    "classifier_pretrain_loss=cross_entropy": ({"classifier_pretrain_loss": "cross_entropy"},
                                               "code"),
    "similarity=gauss": ({"similarity": "gauss"}, "code"),
    # sigma only enters distance-based weights: under the code's no_inform weights the
    # flip would change nothing, so it is flipped on top of gauss and compared with gauss
    "sigma_mode=honoured": ({"similarity": "gauss", "sigma_mode": "honoured"},
                            "similarity=gauss"),
    "lr_schedule=nominal": ({"lr_schedule": "nominal"}, "code"),
    "prior=paper": ({"prior": "paper"}, "code"),
    "gmm_coefficient=1.0": ({"gmm_coefficient": 1.0}, "code"),
}

#: Warm-up length of the ``converge`` grid: one tenth of its 5000 DGG steps (and under
#: one epoch of full MNIST), long enough for Adam's moment estimates to settle.
CONVERGE_WARMUP = 500

#: The diagnostic grid of the ``converge`` and ``full`` protocols: {name: (overrides,
#: baseline)}. A warm-up changes only the first steps and a smaller rate all of them,
#: so the grid tells the two apart, with and without the plain cross-entropy
#: pretraining (Q5). "paper" and "nearest" with the best fix: ``with_best``.
DIAGNOSTIC_GRID = {
    "code+cross_entropy": ({"classifier_pretrain_loss": "cross_entropy"}, "code"),
    "code+warmup": ({"lr_warmup_steps": CONVERGE_WARMUP}, "code"),
    "code+lr=0.0002": ({"learning_rate": 0.0002}, "code"),
    "code+cross_entropy+warmup": ({"classifier_pretrain_loss": "cross_entropy",
                                   "lr_warmup_steps": CONVERGE_WARMUP}, "code"),
    "code+cross_entropy+lr=0.0002": ({"classifier_pretrain_loss": "cross_entropy",
                                      "learning_rate": 0.0002}, "code"),
}

#: The sizes of each protocol. ``cpu``: sized for about 2.5 h on 2 cores (see
#: ``estimate_seconds``); ``full``: the paper's MNIST run, meant for a GPU; ``tiny``: a
#: smoke test of the machinery.
PROTOCOLS = {
    "cpu": {"subset": 10000, "epochs": 15, "precision": "mixed_bfloat16", "seeds": 5,
            "flip_seeds": 3, "settings": {}},
    "full": {"subset": None, "epochs": 300, "precision": "float32", "seeds": 5,
             "flip_seeds": 5, "settings": {}, "grid": "flips+diagnostic"},
    # past the first-step collapse on these CPUs: 5000 images x 100 epochs = 5000 steps
    # a cell (about 20 min in float32 on 2 cores), float32 on every CPU (mixed_bfloat16
    # is another trajectory, and not every CPU has bfloat16 instructions)
    "converge": {"subset": 5000, "epochs": 100, "precision": "float32", "seeds": 3,
                 "flip_seeds": 2, "settings": {}, "grid": "diagnostic"},
    "tiny": {"subset": 1000, "epochs": 1, "precision": "float32", "seeds": 2,
             "flip_seeds": 1, "settings": {"classifier_epochs": 2, "kmeans_n_init": 2}},
}

#: Measured seconds per training step of 100 x 21 rows on 2 idle cores.
STEP_SECONDS = {"float32": 0.22, "mixed_bfloat16": 0.13}
#: Per-cell seconds besides DGG training (start-up, K-means, classifier pretraining,
#: full passes), per 10000 samples, on 2 idle cores (an estimate).
CELL_OVERHEAD_SECONDS = 45.0
PLAN, INPUTS = "plan.json", "inputs.npz"


def _grid(protocol):
    """{name: (overrides, baseline)} of the protocol's configurations besides code and
    paper: the single flips (default), the diagnostic grid, or both."""
    kinds = protocol.get("grid", "flips").split("+")
    grid = {}
    for kind in kinds:
        grid.update({"flips": FLIPS, "diagnostic": DIAGNOSTIC_GRID}[kind])
    return grid


def with_best(protocol, best):
    """The two cells the diagnostic grid adds once its best fix ``best`` (a name of
    ``DIAGNOSTIC_GRID``) is known: the paper preset with that fix, and the code with that
    fix and the nearest neighbours (Q1)."""
    if best not in DIAGNOSTIC_GRID:
        raise ValueError(f"--with-best takes one of {', '.join(DIAGNOSTIC_GRID)}, got {best!r}")
    fix = DIAGNOSTIC_GRID[best][0]
    suffix = best[len("code"):]
    seeds = list(range(protocol["flip_seeds"]))
    return {f"paper{suffix}": {"overrides": {**PRESETS["paper"], **fix}, "baseline": "paper",
                               "seeds": seeds},
            f"{best}+nearest": {"overrides": {**fix, "neighbor_selection": "nearest"},
                                "baseline": best, "seeds": seeds}}


def sweep_configs(protocol, names=None):
    """{name: {"overrides", "baseline", "seeds"}} of the sweep (``names``: a selection)."""
    main = list(range(protocol["seeds"]))
    flip = list(range(protocol["flip_seeds"]))
    configs = {"code": {"overrides": {}, "baseline": None, "seeds": main},
               "paper": {"overrides": dict(PRESETS["paper"]), "baseline": "code", "seeds": main}}
    for name, (overrides, baseline) in _grid(protocol).items():
        configs[name] = {"overrides": dict(overrides), "baseline": baseline, "seeds": flip}
    if names:
        unknown = [n for n in names if n not in configs]
        if unknown:
            raise ValueError(f"unknown configuration(s) {', '.join(unknown)}; known: "
                             f"{', '.join(configs)}")
        configs = {n: configs[n] for n in configs if n in names}
    return configs


def estimate_seconds(protocol, configs, n_samples, batch_size=100):
    """Wall seconds of the whole sweep on 2 idle cores, one cell at a time."""
    steps = -(-n_samples // batch_size)
    cell = (CELL_OVERHEAD_SECONDS * n_samples / 10000
            + protocol["epochs"] * steps * STEP_SECONDS[protocol["precision"]])
    return cell * sum(len(c["seeds"]) for c in configs.values())


def cell_dir(sweep_dir, name, seed):
    return os.path.join(sweep_dir, "runs", name, f"seed-{seed}")


def cell_config(plan, name, seed):
    """The DGGConfig of one cell: code preset, protocol settings, overrides, seed."""
    protocol = plan["protocol"]
    base = DGGConfig.preset("code").replace(**protocol["settings"])
    return base.replace(**plan["configs"][name]["overrides"], seed=int(seed),
                        epochs=int(protocol["epochs"]), precision=protocol["precision"])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def cell_state(path, epochs):
    """"done" (finished with ``epochs`` epochs), "resume" (started) or "new"."""
    info_path = os.path.join(path, "config.json")
    if os.path.exists(info_path):
        finished = read_json(info_path).get("finished") or {}
        if finished.get("epochs") == epochs:
            return "done"
    return "resume" if os.path.isdir(path) else "new"


# ---------------------------------------------------------------- preparing a sweep
def prepare(sweep_dir, protocol, configs, x, y, tables, weights, data_info=None):
    """Write plan.json and inputs.npz (the data and neighbour tables every cell uses) of
    a new sweep; returns the plan."""
    from .files import write_bytes_atomic
    from .files import fingerprint
    from .report import write_json_atomic
    if os.path.exists(os.path.join(sweep_dir, PLAN)):
        raise ValueError(f"{sweep_dir} already holds a sweep; extend it with extend()")
    os.makedirs(sweep_dir, exist_ok=True)
    x = np.asarray(x, np.float32)
    data_info = {**(data_info or {}), "n_samples": int(len(x)),
                 "data_fingerprint": fingerprint(x)}
    plan = {"protocol": {**protocol, "data": data_info}, "configs": configs,
            "weights": os.path.abspath(os.fspath(weights))}
    arrays = {"x": x, **{f"table_{m}": np.asarray(t) for m, t in tables.items()}}
    if y is not None:
        arrays["y"] = np.asarray(y)
    write_bytes_atomic(os.path.join(sweep_dir, INPUTS), lambda f: np.savez(f, **arrays))
    write_json_atomic(os.path.join(sweep_dir, PLAN), plan)
    return plan


def extend(sweep_dir, protocol, configs):
    """Check that the existing sweep in ``sweep_dir`` has the same protocol sizes and
    add the configurations not yet in it; returns the plan."""
    from .report import write_json_atomic
    plan = read_json(os.path.join(sweep_dir, PLAN))
    old = {k: v for k, v in plan["protocol"].items() if k != "data"}
    new = json.loads(json.dumps({k: v for k, v in protocol.items() if k != "data"}))
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(f"{sweep_dir} holds a sweep with another protocol (differs in "
                         f"{', '.join(diff)}); use a new --out or the same settings")
    for name, c in configs.items():
        if name in plan["configs"] and plan["configs"][name]["overrides"] != \
                json.loads(json.dumps(c["overrides"])):
            raise ValueError(f"{sweep_dir}: configuration {name} has other overrides there")
    plan["configs"] = {**plan["configs"], **json.loads(json.dumps(configs))}
    write_json_atomic(os.path.join(sweep_dir, PLAN), plan)
    return plan


def load_inputs(sweep_dir):
    """x, y (or None) and {selection mode: table} of a prepared sweep."""
    with np.load(os.path.join(sweep_dir, INPUTS)) as z:
        tables = {k[len("table_"):]: z[k] for k in z.files if k.startswith("table_")}
        return z["x"], (z["y"] if "y" in z.files else None), tables


# ---------------------------------------------------------------- one cell
def run_cell(sweep_dir, name, seed, verbose=2):
    """Run (or resume) one cell in this process; returns its run directory."""
    from .pipeline import run_dgg
    plan = read_json(os.path.join(sweep_dir, PLAN))
    if name not in plan["configs"]:
        raise ValueError(f"configuration {name!r} is not in {sweep_dir}/{PLAN}")
    config = cell_config(plan, name, seed)
    path = cell_dir(sweep_dir, name, seed)
    state = cell_state(path, config.epochs)
    if state == "done":
        return path
    x, y, tables = load_inputs(sweep_dir)
    if config.neighbor_selection not in tables:
        raise ValueError(f"the sweep's inputs hold no {config.neighbor_selection} table")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    info = {"variant": name, "sweep": os.path.abspath(sweep_dir), "data": plan["protocol"]["data"],
            "command": f"python -m dgg_tf.sweep {sweep_dir} {name} {seed}"}
    run_dgg(config, x, y, neighbors=tables, weights=plan["weights"], workdir=path,
            resume=state == "resume", verbose=verbose, audit=False, info=info)
    return path


def cell_result(sweep_dir, name, seed):
    """{classifier_acc, full_acc, full_nmi, epochs, wall_seconds} of a finished cell."""
    info = read_json(os.path.join(cell_dir(sweep_dir, name, seed), "config.json"))
    fin = info.get("finished") or {}
    return {"classifier_acc": (info.get("classifier") or {}).get("acc"),
            "full_acc": fin.get("acc"), "full_nmi": fin.get("nmi_max"),
            "epochs": fin.get("epochs"), "wall_seconds": fin.get("wall_seconds")}


# ---------------------------------------------------------------- the whole sweep
def _cells(plan):
    """Every (configuration, seed), seed by seed: the first seed of every configuration
    finishes before any second seed, so an interrupted sweep has seen every configuration."""
    cells = [(name, seed) for name, c in plan["configs"].items() for seed in c["seeds"]]
    return sorted(cells, key=lambda cell: cell[1])


def _spawn(sweep_dir, name, seed):
    """Start one cell as a subprocess, its output appended to logs/NAME-seed-S.log."""
    os.makedirs(os.path.join(sweep_dir, "logs"), exist_ok=True)
    log = open(os.path.join(sweep_dir, "logs", f"{name}-seed-{seed}.log"), "a")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.Popen([sys.executable, "-m", "dgg_tf.sweep", os.path.abspath(sweep_dir),
                             name, str(seed)], stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return proc


def _f(v):
    return "n/a" if v is None else f"{v:.4f}"


class _Progress:
    """Counts the finished cells and prints one line per cell with the sweep's ETA."""

    def __init__(self, sweep_dir, total, done, jobs, say):
        self.sweep_dir, self.total, self.done, self.jobs, self.say = \
            sweep_dir, total, done, jobs, say
        self.failed, self.walls = 0, []

    def finished(self, name, seed, status, t0, left):
        self.done += 1
        self.failed += status != 0
        self.walls.append(time.time() - t0)
        if status == 0:
            r = cell_result(self.sweep_dir, name, seed)
            what = (f"ACC {_f(r['full_acc'])} NMI {_f(r['full_nmi'])} (classifier ACC "
                    f"{_f(r['classifier_acc'])})")
        else:
            what = f"FAILED (exit {status}; see logs/{name}-seed-{seed}.log)"
        eta = sum(self.walls) / len(self.walls) * left / max(self.jobs, 1)
        span = f"{eta / 3600:.1f} h" if eta > 5400 else f"{eta / 60:.0f} min"
        self.say(f"[{self.done}/{self.total}] {name} seed {seed}: {what} in "
                 f"{self.walls[-1] / 60:.1f} min; sweep ETA {span}")


def _run_parallel(sweep_dir, todo, jobs, progress):
    """Run the cells ``todo`` as subprocesses, ``jobs`` at a time."""
    queue, running = list(todo), {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                name, seed = queue.pop(0)
                running[(name, seed)] = (_spawn(sweep_dir, name, seed), time.time())
            ended = [k for k, (proc, _) in running.items() if proc.poll() is not None]
            if not ended:
                time.sleep(1.0)
            for key in ended:
                proc, t0 = running.pop(key)
                progress.finished(*key, proc.returncode, t0, len(queue) + len(running))
    finally:
        for proc, _ in running.values():     # interrupted: the cells resume next time
            proc.terminate()
            proc.wait()


def run_sweep(sweep_dir, jobs=1, in_process=False, say=print):
    """Run every cell of the prepared sweep not yet finished (``jobs`` subprocesses at a
    time; ``in_process``: one after another in this process, for tests), then write
    sweep.json, sweep.md and sweep.png. Returns the number of failed cells."""
    from .sweep_summary import write_summary
    plan = read_json(os.path.join(sweep_dir, PLAN))
    cells = _cells(plan)
    todo = [(n, s) for n, s in cells
            if cell_state(cell_dir(sweep_dir, n, s), plan["protocol"]["epochs"]) != "done"]
    say(f"sweep {sweep_dir}: {len(cells)} cells, {len(cells) - len(todo)} finished, "
        f"{len(todo)} to run ({'in this process' if in_process else f'{jobs} at a time'})")
    progress = _Progress(sweep_dir, len(cells), len(cells) - len(todo), jobs, say)
    if in_process:
        for i, (name, seed) in enumerate(todo):
            t0 = time.time()
            run_cell(sweep_dir, name, seed, verbose=0)
            progress.finished(name, seed, 0, t0, len(todo) - i - 1)
    else:
        _run_parallel(sweep_dir, todo, jobs, progress)
    write_summary(sweep_dir)
    return progress.failed


def main(argv=None):
    """``python -m dgg_tf.sweep SWEEP NAME SEED``: run one cell (the sweep's subprocess)."""
    from .cli import quiet_tensorflow, run_main
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m dgg_tf.sweep SWEEP_DIR NAME SEED", file=sys.stderr)
        return 2
    quiet_tensorflow()
    return run_main(lambda: (run_cell(argv[0], argv[1], int(argv[2])), 0)[1])


if __name__ == "__main__":
    sys.exit(main())
