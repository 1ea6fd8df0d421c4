"""The one checkpoint format of every stage that trains over epochs, and the one way
to resume from it.

Kinds (``KINDS``): ``"dgg"`` (a run's ``checkpoint.npz``: the DGG network after each
epoch, with what the stages before training left: the GMM init, the pretrained
classifier's history, the audit, the K-means labels), ``"autoencoder"`` (the layer-wise
pretraining) and ``"siamese"`` (the Siamese network), both at ``OUT.ckpt.npz``.

A checkpoint is one ``.npz``, written to a temporary name and renamed (a kill never
leaves half of one): the weights as ``param/NAME``, the optimizer's variables as
``optimizer/NNN`` (their own dtypes), other arrays of the state as ``array/NAME``, and
``record``: a JSON string holding ``format`` (``FORMAT``), ``kind``,
``n_optimizer_arrays``, ``state`` (epoch, history and the stage's other JSON entries)
and ``provenance`` (seed, data fingerprint, config: what ``check_same_run`` compares).
Batches and noise are functions of (seed, epoch, step) (``fit``), so no random state
is kept: a run resumed from it continues exactly as an uninterrupted one.

The format tag is the one version mechanism: a file of any other format (the DGG
run's ``dgg_tf-run-checkpoint-v1``/``-v2``, the HDF5 ``.ckpt.h5`` of the autoencoder
and Siamese stages before it) is refused with ``CheckpointFormatError``, naming the
file and what to do. No TensorFlow: a sweep or a report reads a checkpoint's record
without it; ``train.checkpoint`` puts a checkpoint's arrays into a network.
"""
from __future__ import annotations

import json
import os

import numpy as np

from dgg_tf.core.console import say
from dgg_tf.core.files import clean, write_bytes_atomic

FORMAT = "dgg_tf-checkpoint-v3"
KINDS = ("dgg", "autoencoder", "siamese")
_ARRAY_ENTRIES = ("params", "optimizer", "arrays")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class CheckpointFormatError(ValueError):
    """A checkpoint written in another (older) format; ``record`` holds its JSON
    record where it has one (read-only uses, e.g. a figure of an old run)."""

    def __init__(self, message, record=None):
        super().__init__(message)
        self.record = record


def checkpoint_path(out_path):
    """Where the per-epoch checkpoint of a stage writing ``out_path`` lives."""
    return os.fspath(out_path) + ".ckpt.npz"


def _old_stage_path(path):
    """Where earlier versions kept the stage checkpoint now at ``path`` (``OUT.ckpt.h5``)."""
    return path[:-len(".npz")] + ".h5" if path.endswith(".ckpt.npz") else None


def save_checkpoint(path, kind, state, provenance=None):
    """Write a training ``state`` of stage ``kind`` atomically to ``path``.

    ``state``: ``params`` (name -> array), ``optimizer`` (list of arrays, or None),
    ``arrays`` (name -> array, optional) and JSON entries (``epoch``, ``history``, ...);
    ``provenance``: JSON entries describing the run (see ``check_same_run``)."""
    _check_kind(kind)
    arrays = {f"param/{k}": np.asarray(v) for k, v in state["params"].items()}
    optimizer = list(state.get("optimizer") or [])
    arrays.update({f"optimizer/{i:03d}": np.asarray(v) for i, v in enumerate(optimizer)})
    arrays.update({f"array/{k}": np.asarray(v) for k, v in (state.get("arrays") or {}).items()})
    record = {"format": FORMAT, "kind": kind, "n_optimizer_arrays": len(optimizer),
              "state": {k: v for k, v in state.items() if k not in _ARRAY_ENTRIES},
              "provenance": dict(provenance or {})}
    arrays["record"] = np.array(json.dumps(clean(record)))
    write_bytes_atomic(path, lambda f: np.savez(f, **arrays))


def read_record(path, kind=None):
    """The JSON record of a checkpoint (no arrays read), of stage ``kind`` if given;
    ``CheckpointFormatError`` for another format, ValueError if unreadable."""
    return _read(path, kind, arrays=False)[0]


def load_checkpoint(path, kind):
    """``(state, provenance)`` of a checkpoint of stage ``kind`` (``save_checkpoint``):
    ``state`` holds ``params``, ``optimizer`` (None if none saved), ``arrays`` and the
    JSON entries saved with it."""
    record, data = _read(path, kind, arrays=True)
    params = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
    arrays = {k[len("array/"):]: v for k, v in data.items() if k.startswith("array/")}
    try:
        optimizer = [data[f"optimizer/{i:03d}"] for i in range(int(record["n_optimizer_arrays"]))]
    except KeyError as e:
        raise ValueError(f"checkpoint {path} lacks {e}; remove it to start over") from None
    state = {**record["state"], "params": params, "optimizer": optimizer or None,
             "arrays": arrays}
    return state, record["provenance"]


def _read(path, kind, arrays):
    """(record, arrays) of a checkpoint file, after checking its format and kind."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as d:
            tag = next((t for t in ("record", "meta") if t in d.files), None)
            record = json.loads(str(d[tag])) if tag else {}
            current = record.get("format") == FORMAT
            data = {k: d[k] for k in d.files if k != tag} if arrays and current else {}
    except Exception as e:
        _refuse_hdf5(path)
        raise ValueError(f"checkpoint {path} cannot be read ({e}); remove it to start over") \
            from None
    if not current:
        _refuse(path, repr(record.get("format")), record)
    if kind is not None and record.get("kind") != kind:
        raise ValueError(f"{path} is a checkpoint of the {record.get('kind')} stage, not of "
                         f"the {kind} stage; pass the right file or remove it")
    return record, data


def _refuse(path, what, record=None):
    raise CheckpointFormatError(
        f"{path} is a checkpoint of format {what}, written by an earlier dgg_tf; this "
        f"version reads only {FORMAT!r} and cannot continue it: remove it to start the "
        "stage over, or finish the run with the dgg_tf version that wrote it", record)


def _refuse_hdf5(path):
    """Refuse an HDF5 file: the autoencoder/Siamese checkpoint format before this one."""
    try:
        with open(path, "rb") as f:
            if f.read(len(_HDF5_MAGIC)) != _HDF5_MAGIC:
                return
    except OSError:
        return
    _refuse(path, "HDF5 (weights with optimizer/NNN arrays: the autoencoder and Siamese "
            "checkpoints of earlier versions)")


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {', '.join(KINDS)}, got {kind!r}")


# ---------------------------------------------------------------- resuming
def check_same_run(provenance, expected, path):
    """--resume must continue the same computation: every entry of ``expected`` (seed,
    data fingerprint, config without its epochs, ...) must equal the checkpoint's."""
    for key, mine in clean(expected).items():
        theirs = provenance.get(key)
        if theirs == mine:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict):
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            show = ", ".join(f"{k}={theirs.get(k)!r} (now {mine.get(k)!r})" for k in diff[:6])
            what = f"another {key}: {show}"
        else:
            what = f"{key}={theirs!r}, this run has {mine!r}"
        raise ValueError(f"--resume: checkpoint {path} was made with {what}; rerun with the "
                         "original settings and inputs, or remove it / use a new output")


def resume_checkpoint(path, kind, expected, verbose=1):
    """The ``(state, provenance)`` to continue a stage of ``kind`` from, or None when
    ``path`` holds no checkpoint yet (the stage starts from the beginning). Refuses a
    checkpoint of another format (also one left at the stage's former name), another
    kind or another run (``check_same_run`` against ``expected``)."""
    path = os.fspath(path)
    old = _old_stage_path(path)
    if not os.path.exists(path) and old and os.path.exists(old):
        _read(old, kind, arrays=False)
    if not os.path.exists(path):
        say(verbose, f"--resume: no checkpoint {path} yet; starting from the beginning")
        return None
    state, provenance = load_checkpoint(path, kind)
    check_same_run(provenance, expected, path)
    where = f"stage {state['stage'] + 1}, " if "stage" in state else ""
    say(verbose, f"resuming from {path}: {where}{state['epoch']} epoch(s) done")
    return state, provenance
