"""history.csv: a run's epoch records, one row per epoch, every key of the records
(floats round-trip exactly). The run directory (``core.rundir.RunDir``) owns the file;
these are the format's two halves."""
from __future__ import annotations

import csv
import io

from dgg_tf.core.files import write_text_atomic


def write_history_csv(path, history):
    """history.csv: one row per epoch, every key of the records (floats round-trip exactly)."""
    keys = []
    for r in history:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(keys)
    for r in history:
        wr.writerow(["" if r.get(k) is None else repr(r[k]) if isinstance(r[k], float) else r[k]
                     for k in keys])
    write_text_atomic(path, buf.getvalue())


def parse_cell(text):
    """A history.csv cell as None, int, float or the text itself."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_history_csv(path):
    """The records of a history.csv written by ``write_history_csv``."""
    with open(path, newline="") as f:
        return [{k: parse_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]
