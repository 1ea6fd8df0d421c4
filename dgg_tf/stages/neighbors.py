"""Which neighbour tables a run uses: the file it names (with its sibling of the other
selection mode, for the Q1 audit), arrays passed in, or tables rebuilt inside a subset
(exact kNN on the raw inputs, or the trained Siamese network's embedding). The table
itself (format, files, checks, building) is ``dgg_tf.tables``."""
from __future__ import annotations

import os
import time

import numpy as np

from dgg_tf.core.config import CHOICES, DGGConfig
from dgg_tf.core.tables import check_table, check_table_size, load_table, sibling_path
from dgg_tf.numerics.knn import tables_of_embedding
from dgg_tf.stages.siamese import subset_neighbors


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


def rebuild_raw(x, config: DGGConfig):
    """Tables of every selection mode from exact kNN on the raw inputs (no Siamese
    network): ``(tables, info)``."""
    n = len(x)
    check_table_size(n, config, "rebuilding neighbours",
                     "; use more data or --set table_top=...")
    t = time.time()
    tables, _, _ = tables_of_embedding(x, config, seed=config.seed)
    note = (f"rebuilt for {n} samples: exact {config.table_top}-NN on the RAW INPUTS, then "
            f"neighbor_selection={config.neighbor_selection} from the top {config.table_top} "
            f"(seed {config.seed}); {time.time() - t:.1f} s")
    return tables, {"source": "raw_knn", "note": note, "path": None}


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


def subset_tables(x, y, config: DGGConfig, how="siamese", siamese_weights=None):
    """Tables of every selection mode inside a subset ``x``: ``how="siamese"`` as the
    original builds them (the trained Siamese network's embedding, its exact
    ``table_top`` nearest, ``table_columns`` of them drawn or the nearest), ``"raw"``
    by exact kNN on the inputs. Returns ``(tables, info)``; info is JSON-ready."""
    if how == "raw":
        return rebuild_raw(x, config)
    if how != "siamese":
        raise ValueError(f"subset neighbours must be 'siamese' or 'raw', got {how!r}")
    if siamese_weights is None or not os.path.exists(siamese_weights):
        raise ValueError(f"Siamese weights {siamese_weights} do not exist; build them with "
                         "reproduce/siamese_mnist.py or use raw-pixel neighbours")
    _, info = subset_neighbors(x, siamese_weights, config, seed=config.seed, labels=y)
    tables = info.pop("tables")
    info["purity_by_mode"] = info.pop("purity", None)
    info.update(source="siamese_subset", note=(
        f"rebuilt for {len(x)} samples: the Siamese embedding ({siamese_weights}), exact "
        f"{config.table_top}-NN in it, neighbor_selection={config.neighbor_selection}"))
    return tables, info
