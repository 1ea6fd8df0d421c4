"""A sweep's protocols and configurations: the sizes of each protocol, the single
switch flips, the diagnostic grid, and the configurations a protocol runs. Pure data
(no TensorFlow): the plan is written from these."""
from __future__ import annotations

from dgg_tf.core.config import PRESETS

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


#: Measured seconds per training step of 100 x 21 rows on 2 idle cores (a CPU has no
#: TensorFloat-32: tf32 runs as float32 there).
STEP_SECONDS = {"float32": 0.22, "tf32": 0.22, "mixed_bfloat16": 0.13}


#: Per-cell seconds besides DGG training (start-up, K-means, classifier pretraining,
#: full passes), per 10000 samples, on 2 idle cores (an estimate).
CELL_OVERHEAD_SECONDS = 45.0


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
