"""Neighbour tables rebuilt inside a subset of the data: exact kNN on the raw inputs, or
the shipped Siamese network's embedding (as the original builds them). Tables a run is
given (a file with its sibling, arrays) are read and checked by ``core.tables``."""
from __future__ import annotations

import os
import time

from dgg_tf.core.config import DGGConfig
from dgg_tf.core.tables import check_table_size
from dgg_tf.numerics.knn import tables_of_embedding
from dgg_tf.stages.siamese import subset_neighbors


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
