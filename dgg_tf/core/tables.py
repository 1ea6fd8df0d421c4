"""The neighbour table (section 2 of docs/quirks.md), in one place.

A table is an int32 array [N, 1 + columns]: row i holds i itself (column 0), then
the indices of its neighbours. Training uses columns 0..num_neighbors (the width
rule, ``columns_needed``). This module holds its file format (``.npz`` with a JSON
settings string), writing and reading it, the checks, the file names of the
selection modes and the purity against labels. The one builder from an embedding
(exact k-NN, then the selection mode) is ``numerics.knn.tables_of_embedding``.

No TensorFlow or Keras: a table can be read, checked and scored anywhere.
"""
from __future__ import annotations

import datetime
import json
import os
import zipfile

import numpy as np

from dgg_tf.core.config import CHOICES, DGGConfig
from dgg_tf.core.files import clean, write_bytes_atomic

TABLE_FORMAT = "dgg_tf-neighbors-v1"


class TableError(ValueError):
    """A neighbour table file is missing, corrupt, or does not fit the data."""


# ----------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------
def columns_needed(num_neighbors):
    """The width rule: training with ``num_neighbors`` reads the sample's own column
    plus that many neighbour columns."""
    return int(num_neighbors) + 1


def check_width(table, source, num_neighbors):
    """Refuse a table narrower than ``columns_needed(num_neighbors)`` (TableError)."""
    needed = columns_needed(num_neighbors)
    if table.shape[1] < needed:
        raise TableError(f"neighbour table {source} has {table.shape[1]} columns; "
                         f"num_neighbors={num_neighbors} needs {needed}")


def check_table(table, source, n_samples=None, num_neighbors=None):
    """Check a table array and return it: integer dtype, [N, >= 2], N equal to
    ``n_samples`` (if given), indices in [0, N), column 0 the sample itself, and (if
    ``num_neighbors`` is given) the width rule. ``source`` names it in the TableError."""
    if not np.issubdtype(table.dtype, np.integer):
        raise TableError(f"neighbour table {source}: dtype {table.dtype}, expected integer "
                         "indices (int32)")
    if table.ndim != 2 or table.shape[1] < 2 or table.shape[0] < 1:
        raise TableError(f"neighbour table {source}: shape {table.shape}, expected [N, 1 + "
                         "neighbours] with at least one neighbour column")
    n = table.shape[0]
    if n_samples is not None and n != int(n_samples):
        raise TableError(f"neighbour table {source} has {n} rows but the data has {n_samples} "
                         "samples; build the table for this data (same order, same subset)")
    if n > np.iinfo(np.int32).max or table.min() < 0 or table.max() >= n:
        raise TableError(f"neighbour table {source}: indices must lie in [0, {n}), found "
                         f"[{table.min()}, {table.max()}]")
    if not np.array_equal(table[:, 0], np.arange(n)):
        bad = int(np.flatnonzero(table[:, 0] != np.arange(n))[0])
        raise TableError(f"neighbour table {source}: column 0 must be the sample itself "
                         f"(row {bad} holds {table[bad, 0]})")
    if num_neighbors is not None:
        check_width(table, source, num_neighbors)
    return table


def check_table_size(n_samples, config: DGGConfig, what, hint=""):
    """A table needs ``table_top`` neighbours besides each sample: n > table_top, else
    ValueError (``what`` names the caller, ``hint`` is appended)."""
    if n_samples <= config.table_top:
        raise ValueError(f"{what}: {n_samples} samples; a neighbour table needs more than "
                         f"table_top = {config.table_top} (at least {config.table_top + 1})"
                         f"{hint}")


# ----------------------------------------------------------------------------
# files and their names
# ----------------------------------------------------------------------------
def save_table(path, table, **settings):
    """Write a neighbour table as ``.npz`` (compressed), atomically (temporary file,
    then rename). ``settings`` (selection mode, table_top, seed, provenance,
    purity, ...) must be JSON-serialisable; stored as a JSON string with the format
    tag, the date, N and the number of columns."""
    path = os.fspath(path)
    table = check_table(np.asarray(table), path)
    meta = {"format": TABLE_FORMAT, "n_samples": int(table.shape[0]),
            "columns": int(table.shape[1]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), **settings}
    try:
        meta_json = json.dumps(clean(meta), sort_keys=True)
    except TypeError as e:
        raise TableError(f"table settings are not JSON-serialisable: {e}") from None
    write_bytes_atomic(path, lambda f: np.savez_compressed(
        f, table=table.astype(np.int32), settings=np.array(meta_json)))


def load_table(path, n_samples=None, num_neighbors=None):
    """Read a table written by ``save_table``: ``(table int32 [N, C], settings dict)``,
    checked by ``check_table`` (rows against ``n_samples`` and the width rule for
    ``num_neighbors``, each when given)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TableError(f"neighbour table: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as d:
            if "table" not in d.files:
                raise TableError(f"neighbour table: {path} holds no 'table' array "
                                 f"(arrays: {', '.join(d.files)})")
            table = d["table"]
            settings = json.loads(str(d["settings"])) if "settings" in d.files else {}
    except TableError:
        raise
    except Exception as e:  # zip/format errors on corrupt files
        # NumPy reads a file that is no zip archive as a pickle and then suggests
        # allow_pickle=True, which would be a wrong (and unsafe) hint here
        why = ("it is not an .npz archive (a zip of .npy arrays), as save_table writes"
               if not zipfile.is_zipfile(path) else str(e))
        raise TableError(f"neighbour table: cannot read {path}: {why}") from None
    check_table(table, path, n_samples, num_neighbors)
    return table.astype(np.int32), settings


def table_paths(out_table):
    """The file of every selection mode: the original's (Q1) at ``out_table``, each
    other one next to it as ``STEM_MODE.npz`` (e.g. ``mnist_neighbors_nearest.npz``)."""
    stem, ext = os.path.splitext(os.fspath(out_table))
    original, *others = CHOICES["neighbor_selection"]
    return {original: os.fspath(out_table), **{mode: f"{stem}_{mode}{ext or '.npz'}"
                                                for mode in others}}


def sibling_path(path, selection):
    """The table of the other selection mode next to ``path`` (``x.npz`` holds
    random_top100, ``x_nearest.npz`` nearest, as ``table_paths`` names them), or None."""
    stem, ext = os.path.splitext(path)
    if selection == "random_top100":
        return table_paths(path)["nearest"]
    return stem[:-len("_nearest")] + ext if stem.endswith("_nearest") else None


# ----------------------------------------------------------------------------
# what a run is given
# ----------------------------------------------------------------------------
def load_tables(path, n, config: DGGConfig):
    """The table at ``path`` for ``n`` samples, checked against the config, plus its
    sibling when present: ``(tables {mode: table}, stored_purity, info)``."""
    table, settings = load_table(path, n_samples=n, num_neighbors=config.num_neighbors)
    selection = settings.get("neighbor_selection")
    if selection is not None and selection != config.neighbor_selection:
        raise ValueError(f"neighbour table {path} was built with neighbor_selection={selection} "
                         f"but the config says {config.neighbor_selection}; pass the matching "
                         f"table or --set neighbor_selection={selection}")
    tables = {config.neighbor_selection: table}
    sibling = sibling_path(path, config.neighbor_selection)
    if sibling and os.path.exists(sibling):
        try:
            other = [m for m in CHOICES["neighbor_selection"] if m != config.neighbor_selection]
            tables[other[0]] = load_table(sibling, n_samples=n)[0]
        except ValueError as e:
            print(f"note: ignoring {sibling} for Q1: {e}", flush=True)
    stored = settings.get("purity") if isinstance(settings.get("purity"), dict) else None
    keep = ("format", "neighbor_selection", "table_top", "table_columns", "seed", "date", "purity")
    info = {"source": "file", "path": os.path.abspath(path),
            "settings": {k: settings[k] for k in keep if k in settings},
            "note": f"loaded {path} ({table.shape[0]} x {table.shape[1]})"}
    return tables, stored, info


def as_tables(neighbors, n, config: DGGConfig):
    """What ``run_dgg`` accepts as ``neighbors`` (a path, an (N, 1 + k) array, or a dict
    {selection mode: array}) as ``(tables, stored_purity, info)``."""
    if isinstance(neighbors, (str, os.PathLike)):
        return load_tables(os.fspath(neighbors), n, config)
    tables = dict(neighbors) if isinstance(neighbors, dict) else \
        {config.neighbor_selection: neighbors}
    if config.neighbor_selection not in tables:
        raise ValueError(f"neighbors: no table for neighbor_selection={config.neighbor_selection} "
                         f"(got {', '.join(tables)})")
    for mode, table in tables.items():
        tables[mode] = check_table(np.asarray(table), f"neighbors[{mode!r}]", n,
                                   config.num_neighbors)
    return tables, None, {"source": "arrays", "path": None}


# ----------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------
def neighbor_purity(table, labels, num_neighbors):
    """Fraction of the neighbours in columns 1..num_neighbors that share the sample's
    label (labels are used for evaluation only)."""
    table = np.asarray(table)
    labels = np.asarray(labels)
    if table.ndim != 2 or num_neighbors < 1 or num_neighbors > table.shape[1] - 1:
        raise ValueError(f"neighbor_purity: num_neighbors={num_neighbors} needs a table with at "
                         f"least {columns_needed(num_neighbors)} columns, got shape {table.shape}")
    if len(labels) != len(table):
        raise ValueError(f"neighbor_purity: {len(labels)} labels for {len(table)} rows")
    nbrs = table[:, 1:num_neighbors + 1]
    return float(np.mean(labels[nbrs] == labels[:, None]))
