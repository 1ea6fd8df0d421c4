"""The per-epoch checkpoint of a DGG run: weights, optimiser state, history and the
results of the stages before training, in one .npz written atomically. Batches and
noise are functions of (seed, epoch, step) (``fitting``), so no random state is kept:
a run resumed from it continues exactly as an uninterrupted run."""
from __future__ import annotations

import json

import numpy as np

from .files import write_bytes_atomic

CHECKPOINT = "checkpoint.npz"
FORMAT = "dgg_tf-run-checkpoint-v2"


def save_checkpoint(path, net, epoch, history, meta, kmeans_labels):
    """Write weights, optimiser variables, ``epoch``, ``history`` and ``meta`` to ``path``."""
    from .files import clean
    from .weights import get_params
    arrays = {f"param/{k}": v for k, v in get_params(net).items()}
    optimizer = [np.asarray(v) for v in net.optimizer.variables]
    for i, value in enumerate(optimizer):
        arrays[f"opt/{i:03d}"] = value
    arrays["kmeans_labels"] = np.asarray(kmeans_labels)
    full = {**meta, "format": FORMAT, "epoch": int(epoch), "history": history,
            "n_optimizer_arrays": len(optimizer)}
    arrays["meta"] = np.array(json.dumps(clean(full)))
    write_bytes_atomic(path, lambda f: np.savez(f, **arrays))


def read_meta(path):
    """The meta record of a checkpoint alone (no arrays read): history, stages, config."""
    with np.load(path, allow_pickle=False) as d:
        return json.loads(str(d["meta"]))


def load_checkpoint(path):
    """(params, optimizer arrays, kmeans_labels, meta) of a checkpoint; ValueError if it
    cannot be read or is of another format."""
    try:
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            params = {k[len("param/"):]: d[k] for k in d.files if k.startswith("param/")}
            optimizer = [d[f"opt/{i:03d}"] for i in range(int(meta["n_optimizer_arrays"]))]
            kmeans_labels = d["kmeans_labels"]
    except Exception as e:
        raise ValueError(f"checkpoint {path} cannot be read ({e}); remove it to start over") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a checkpoint of format {meta.get('format')!r}, not "
                         f"{FORMAT!r} (made by another dgg_tf version); start a new run")
    return params, optimizer, kmeans_labels, meta


def restore(net, params, optimizer):
    """Put a checkpoint's weights and optimiser state into a compiled ``net``."""
    from .weights import set_params
    set_params(net, params, source="checkpoint")
    if len(optimizer) != len(net.optimizer.variables):
        raise ValueError(f"checkpoint holds {len(optimizer)} optimiser arrays, the optimiser "
                         f"has {len(net.optimizer.variables)}")
    for var, value in zip(net.optimizer.variables, optimizer):
        var.assign(value)


def check_same_run(meta, config, fingerprints, path):
    """--resume must continue the same computation: same config (epochs aside), same data
    and neighbour table."""
    mine, theirs = config.to_dict(), dict(meta.get("config") or {})
    mine.pop("epochs", None)
    theirs.pop("epochs", None)
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        show = ", ".join(f"{k}={theirs.get(k)!r} (now {mine.get(k)!r})" for k in diff[:6])
        raise ValueError(f"--resume: checkpoint {path} was made with another configuration: "
                         f"{show}; rerun with the original settings or a new --out")
    for key, value in fingerprints.items():
        if meta.get(key) != value:
            raise ValueError(f"--resume: checkpoint {path} was made with different "
                             f"{key.replace('_', ' ')} ({meta.get(key)} vs {value}); rerun "
                             "with the original inputs")
