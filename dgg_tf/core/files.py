"""Writing files: atomically (every output goes to a temporary name first and is renamed
into place only once complete, so a killed run never leaves half a file), checked
before any work (``check_output_path``); the one JSON form of NumPy values (``clean``)
every JSON file and attribute goes through; the fingerprint that tells data sets apart."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success rename it to ``path``,
    on any error remove it and leave ``path`` untouched."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path, write, mode="wb"):
    """Open a temporary file, call ``write(file)``, flush to disk, rename to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())


def check_output_path(path, what="output"):
    """Fail early (ValueError) unless ``path`` can be written: not a directory, and its
    directory (or the nearest existing parent, which ``atomic_path`` creates from) is
    a writable directory."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a directory")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: {parent} is not a writable directory")


def fingerprint(*arrays):
    """A short hash of arrays (dtype, shape and bytes), to tell data sets apart: a run's
    data and table, a stage's training data, the raw-pixel neighbour cache."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def clean(obj):
    """JSON-ready copy: NumPy scalars/arrays to Python, NaN to None, +-Inf to strings."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return obj


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file (never half a file)."""
    write_bytes_atomic(path, lambda f: f.write(text), mode="w")


def write_json_atomic(path, obj):
    """Write ``clean(obj)`` as strict JSON (indent 1, no NaN) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(clean(obj), indent=1, allow_nan=False) + "\n")


def aligned_empty(shape, align=64):
    """An uninitialised C-contiguous float32 array whose data start on an ``align``-byte
    boundary, so that TensorFlow can use its memory without copying it."""
    size = int(np.prod(shape))
    raw = np.empty(size * 4 + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + size * 4].view(np.float32).reshape(shape)


def aligned_float32(x, align=64):
    """``x`` as an array like ``aligned_empty``'s (a copy only when it is not one)."""
    x = np.asarray(x)
    if x.dtype == np.float32 and x.flags.c_contiguous and x.ctypes.data % align == 0:
        return x
    out = aligned_empty(x.shape, align)
    out[...] = x
    return out
