"""A sweep directory's files and cells: plan.json, inputs.npz (the data and neighbour
tables every cell uses), one run directory per (configuration, seed), each cell's
config and state, and a finished cell's result. No TensorFlow."""
from __future__ import annotations

import json
import os

import numpy as np

from dgg_tf.core.config import DGGConfig
from dgg_tf.core.files import fingerprint, write_bytes_atomic, write_json_atomic
from dgg_tf.core.rundir import RunDir

PLAN, INPUTS = "plan.json", "inputs.npz"

# what a stopped cell's or program's log says: the sweep's command resumes it (a single
# run's "--resume --out RUN_DIR" would start the cell outside its sweep)
SWEEP_RESUMES = "the same sweep command resumes it"


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
    record = RunDir(path).read_record()
    if record is not None and record.is_finished(epochs):
        return "done"
    return "resume" if os.path.isdir(path) else "new"


# ---------------------------------------------------------------- preparing a sweep
def prepare(sweep_dir, protocol, configs, x, y, tables, weights, data_info=None):
    """Write plan.json and inputs.npz (the data and neighbour tables every cell uses) of
    a new sweep; returns the plan."""
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


def _sizes(protocol):
    """What two plans of one sweep must share: the protocol as JSON, less its data
    description; a plan without a backend was made on TensorFlow (before it was kept)."""
    return {"backend": "tensorflow",
            **json.loads(json.dumps({k: v for k, v in protocol.items() if k != "data"}))}


def extend(sweep_dir, protocol, configs):
    """Check that the existing sweep in ``sweep_dir`` has the same protocol sizes and
    add the configurations not yet in it; returns the plan."""
    plan = read_json(os.path.join(sweep_dir, PLAN))
    old, new = _sizes(plan["protocol"]), _sizes(protocol)
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


def cell_result(sweep_dir, name, seed):
    """{classifier_acc, full_acc, full_nmi, epochs, wall_seconds} of a finished cell."""
    run = RunDir(cell_dir(sweep_dir, name, seed))
    record = run.read_record()
    if record is None:
        raise FileNotFoundError(f"{run.config_json}: the cell has not started")
    return record_result(record)


def record_result(record):
    """``cell_result``'s entries of a run's ``RunRecord`` (None entries while unfinished)."""
    return {"classifier_acc": record.classifier_acc, "full_acc": record.final_acc,
            "full_nmi": record.final_nmi, "epochs": record.finished_epochs,
            "wall_seconds": record.wall_seconds}
