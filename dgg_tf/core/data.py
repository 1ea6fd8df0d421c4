"""MNIST loading: 70000 flattened images (train then test), float32 in [0, 1].

Accepted sources: a directory holding the four idx files (gzipped or not), a
Keras ``mnist.npz``, or VaDE's ``mnist.pkl.gz`` (a pickled pair of pairs). The
commands look, in order, at ``--data``, ``$DGG_DATA``, ``../shared/data/mnist`` beside
the checkout (``dgg_tf.commands.mnist_source``), then the Keras cache, then
``keras.datasets.mnist`` (a download). Every failure names the file and says what to
pass instead; a failure to find any lists every place looked at.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import urllib.request

import numpy as np

from dgg_tf.core.files import aligned_empty, aligned_float32, write_bytes_atomic

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


#: The checkout (the folder that holds dgg_tf/), and the MNIST idx files every project
#: machine has beside it.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_MNIST = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mnist"))


class DataError(ValueError):
    """A data source is missing, corrupt or of the wrong shape."""


def load_mnist(path=None):
    """Return ``(x, y)``: x float32 [70000, 784] in [0, 1], y int64 [70000]."""
    if path is None:
        return _load_default()
    path = os.fspath(path)
    if os.path.isdir(path):
        return _load_idx_dir(path)
    if not os.path.exists(path):
        raise DataError(f"MNIST: {path} does not exist; pass a directory with the four "
                        "idx files, a Keras mnist.npz or VaDE's mnist.pkl.gz")
    if path.endswith(".npz"):
        return _load_npz(path)
    if path.endswith((".pkl.gz", ".pkl")):
        return _load_pickle(path)
    raise DataError(f"MNIST: cannot tell the format of {path}; expected a directory of "
                    "idx files, a .npz or a .pkl.gz")


def _finish(x_train, y_train, x_test, y_test, source):
    """Concatenate train then test, flatten, scale to [0, 1] and check."""
    x = np.concatenate([np.asarray(x_train), np.asarray(x_test)])
    y = np.concatenate([np.asarray(y_train), np.asarray(y_test)]).astype(np.int64).ravel()
    x = x.reshape(len(x), -1)
    if x.shape[1] != 784 or len(x) != len(y):
        raise DataError(f"MNIST: {source} holds images of shape {x.shape} and {len(y)} "
                        "labels; expected 784 pixels per image and one label per image")
    # into 64-byte aligned memory, so that training can use it without a copy
    if x.dtype == np.uint8 or x.max() > 1.0:
        x = np.divide(x, np.float32(255.0), out=aligned_empty(x.shape), dtype=np.float32)
    x = aligned_float32(x)
    if not np.all(np.isfinite(x)):
        raise DataError(f"MNIST: {source} contains non-finite pixel values")
    return x, y


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"MNIST: cannot read {path}: {e}") from None
    if len(raw) < 8:
        raise DataError(f"MNIST: {path} is truncated (no idx header)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"MNIST: {path} is not an unsigned-byte idx file")
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"MNIST: {path} is truncated or corrupt: header promises "
                        f"{expected} bytes of data, file holds {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _load_idx_dir(directory):
    arrays = {}
    for key, stem in IDX_FILES.items():
        for candidate in (stem + ".gz", stem):
            full = os.path.join(directory, candidate)
            if os.path.exists(full):
                arrays[key] = _read_idx(full)
                break
        else:
            raise DataError(f"MNIST: {directory} lacks {stem}(.gz); it needs the four files "
                            f"{', '.join(IDX_FILES.values())}")
    return _finish(arrays["train_images"], arrays["train_labels"],
                   arrays["test_images"], arrays["test_labels"], directory)


def _load_npz(path):
    try:
        with np.load(path) as d:
            parts = [d[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except KeyError as e:
        raise DataError(f"MNIST: {path} lacks the array {e}; a Keras mnist.npz holds "
                        "x_train, y_train, x_test, y_test") from None
    except Exception as e:  # zipfile/pickle errors on corrupt files
        raise DataError(f"MNIST: cannot read {path}: {e}") from None
    return _finish(*parts, path)


def _load_pickle(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            (x_train, y_train), (x_test, y_test) = pickle.load(f, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DataError(f"MNIST: cannot read {path} as VaDE's mnist.pkl.gz "
                        f"((x_train, y_train), (x_test, y_test)): {e}") from None
    return _finish(x_train, y_train, x_test, y_test, path)


#: Keras' copy of MNIST (what ``keras.datasets.mnist`` downloads) and its SHA-256.
KERAS_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def _load_default():
    """Keras' cache, else Keras' file downloaded into that cache. Written here rather
    than through ``keras.datasets.mnist``, which would start TensorFlow to fetch one
    file: the same URL, the same cache path, the same hash check."""
    cache = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")),
                         "datasets", "mnist.npz")
    if os.path.exists(cache):
        return _load_npz(cache)
    try:
        _download(KERAS_MNIST_URL, cache, KERAS_MNIST_SHA256)
    except Exception as e:
        env = os.environ.get("DGG_DATA")
        raise DataError(
            "MNIST not found. Looked at, in order: --data (not given); $DGG_DATA "
            f"({'not set' if not env else env}); {SHARED_MNIST} (no such directory); the "
            f"Keras cache {cache} (absent); a download of {KERAS_MNIST_URL} (failed: "
            f"{type(e).__name__}: {e}). Pass --data DIR with the four idx files, a Keras "
            "mnist.npz or VaDE's mnist.pkl.gz, or set DGG_DATA") from None
    return _load_npz(cache)


def _download(url, path, sha256):
    """``url`` into ``path`` (atomically), refused unless its SHA-256 is ``sha256``."""
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    if hashlib.sha256(body).hexdigest() != sha256:
        raise DataError(f"{url}: the file's SHA-256 is not the published one")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_bytes_atomic(path, lambda f: f.write(body))
