"""Weight files, read and checked without TensorFlow: dgg_tf's own HDF5 format (one flat
file, provenance as attributes), VaDE's Keras-1 HDF5 and the original DGG's ``.out``
folders, each read into a params dict {"encoder1/W": array, ...} and checked against
the shapes a config implies (``check_params``). Putting a params dict into a model is
``numerics.weights.set_params``."""
from __future__ import annotations

import json
import os
import subprocess

import h5py
import numpy as np

from dgg_tf.core.config import DGGConfig, encoder_sizes
from dgg_tf.core.data import REPO

FORMAT_TAG = "dgg_tf-weights-v1"


class WeightsError(ValueError):
    """A weights file or dict is missing, corrupt, or does not fit the model."""


def source_commit() -> str:
    """The git commit of this dgg_tf checkout, '+dirty' if it has uncommitted changes
    to tracked files; 'unknown' unless dgg_tf sits at the top of its own git checkout
    (e.g. an installed copy, or one inside another project's repository)."""
    root = REPO
    try:
        def git(*cmd):
            return subprocess.run(["git", "-C", root, *cmd], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        if os.path.realpath(git("rev-parse", "--show-toplevel")) != os.path.realpath(root):
            return "unknown"
        commit = git("rev-parse", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_weights_h5(path):
    """Read our flat format: returns ``(params, provenance)``."""
    path = os.fspath(path)
    source = f"weights: {path}"
    _require_file(path, source, "a dgg_tf weights file")

    def read(f):
        if _str(f.attrs.get("format", "")) != FORMAT_TAG:
            raise WeightsError(f"{source} is not a dgg_tf weights file "
                               f"(no format attribute {FORMAT_TAG!r})")
        params = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                params[name] = np.array(obj, np.float32)
        f.visititems(visit)
        return params, {k: _attr(v) for k, v in f.attrs.items() if k != "format"}

    params, provenance = _read_h5(path, source, read)
    return check_params(params, None, source), provenance


def _attr(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


ACCEPTED = ("a dgg_tf weights file (HDF5 with attribute format='dgg_tf-weights-v1'), "
            "VaDE's Keras HDF5 weight file (attribute layer_names, at the root or under "
            "model_weights/), or a directory of DGG's w_k.out / b_k.out text files")


def autoencoder_layers(config=None) -> list:
    """encoder1 ... encoderN, decoder1 ... decoderN: the layers VaDE and DGG ship."""
    n = len(encoder_sizes(config or DGGConfig())) - 1
    return [f"encoder{i}" for i in range(1, n + 1)] + [f"decoder{i}" for i in range(1, n + 1)]


def expected_shapes(config=None) -> dict:
    """Shape of every named array that ``config`` implies (kernels [in, out])."""
    config = config or DGGConfig()
    sizes = encoder_sizes(config)
    n = len(sizes) - 1
    dims = {f"encoder{i + 1}": (sizes[i], sizes[i + 1]) for i in range(n)}
    dims.update({f"decoder{i + 1}": (sizes[n - i], sizes[n - i - 1]) for i in range(n)})
    dims["logvar"] = (sizes[-2], sizes[-1])
    dims["classifier"] = (config.latent_dim, config.n_clusters)
    shapes = {}
    for layer, (n_in, n_out) in dims.items():
        shapes[f"{layer}/W"], shapes[f"{layer}/b"] = (n_in, n_out), (n_out,)
    shapes["gmm/mean"] = shapes["gmm/std"] = (config.latent_dim, config.n_clusters)
    return shapes


def check_params(params: dict, config=None, source="params", required=()) -> dict:
    """Raise WeightsError (naming ``source`` and the array) if a name in ``required``
    is missing, an array has the wrong shape for ``config`` (skipped when config is
    None or the name has no known shape) or holds NaN/Inf. Returns ``params``."""
    missing = [name for name in required if name not in params]
    if missing:
        raise WeightsError(f"{source}: missing {', '.join(missing)}")
    shapes = expected_shapes(config) if config is not None else {}
    for name, value in params.items():
        want, shape = shapes.get(name), tuple(np.shape(value))
        if want is not None and shape != want:
            hint = " (transposed? kernels must be [in, out])" if shape[::-1] == want else ""
            raise WeightsError(f"{source}: {name} has shape {shape}, expected {want}{hint}")
        if not np.all(np.isfinite(value)):
            raise WeightsError(f"{source}: {name} contains NaN or Inf")
    return params


def load_vade_h5(path, config=None) -> dict:
    """VaDE's Keras 1.0.8 HDF5 weight file (``ae_mnist_weights.h5``), or the Keras 2
    layout with the same groups under ``model_weights/``: layers encoder1..N and
    decoder1..N, each ``weight_names`` = [kernel [in, out], bias]."""
    path = os.fspath(path)
    config = config or DGGConfig()
    source = f"vade_h5: {path}"
    _require_file(path, source, "VaDE's Keras HDF5 weight file, e.g. ae_mnist_weights.h5")

    def read(f):
        root = _keras_root(f)
        if root is None:
            raise WeightsError(f"{source}: no layer_names attribute at the root or under "
                               "model_weights/, so not a Keras weight file")
        present = [_str(n) for n in root.attrs["layer_names"]]
        params = {}
        for layer in autoencoder_layers(config):
            if layer not in present:
                raise WeightsError(f"{source}: layer {layer} not found; the file has {present}")
            try:
                group = root[layer]
                names = [_str(n) for n in group.attrs.get("weight_names", [])]
                if len(names) != 2:
                    raise WeightsError(f"{source}: layer {layer} lists weights {names}, "
                                       "expected a kernel and a bias")
                params[f"{layer}/W"] = np.array(group[names[0]], np.float32)
                params[f"{layer}/b"] = np.array(group[names[1]], np.float32)
            except WeightsError:
                raise
            except Exception as e:
                raise WeightsError(f"{source}: cannot read layer {layer}: {e}") from None
        return params

    return check_params(_read_h5(path, source, read), config, source)


def load_dgg_out(directory, config=None) -> dict:
    """DGG's ``pretrained_weight/`` text files (savetxt, comma-delimited, kernels
    [in, out], biases one value per line): w_1..w_N = encoder1..N, w_N+1 = decoderN
    (-> 784) ... w_2N = decoder1 (latent -> 2000); the same for b_k."""
    directory = os.fspath(directory)
    config = config or DGGConfig()
    if not os.path.isdir(directory):
        raise WeightsError(f"dgg_out: {directory} is not a directory (expected DGG's "
                           "pretrained_weight/ folder with w_k.out and b_k.out)")
    n = len(encoder_sizes(config)) - 1
    order = [f"encoder{i}" for i in range(1, n + 1)] + [f"decoder{i}" for i in range(n, 0, -1)]
    shapes = expected_shapes(config)
    params = {}
    for k, layer in enumerate(order, start=1):
        for prefix, suffix, ndmin in (("w", "W", 2), ("b", "b", 1)):
            name, file = f"{layer}/{suffix}", os.path.join(directory, f"{prefix}_{k}.out")
            source = f"dgg_out: {file}"
            if not os.path.isfile(file):
                raise WeightsError(f"{source} is missing (expected {name} of shape {shapes[name]})")
            try:
                value = np.loadtxt(file, delimiter=",", ndmin=ndmin)
            except ValueError as e:
                raise WeightsError(f"{source}: cannot parse {name}: {e}") from None
            with np.errstate(over="ignore"):  # float32 overflow becomes Inf, rejected below
                params[name] = value.astype(np.float32)
            check_params({name: params[name]}, config, source)
    return params


def load_any(path, config=None):
    """Load autoencoder (or full) weights from any of the three formats; returns
    ``(params, provenance)``. A directory is read as DGG's .out files."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return load_dgg_out(path, config), {"source": "dgg_out", "path": path}
    source = f"weights: {path}"
    _require_file(path, source, ACCEPTED)
    kind = None
    if _looks_hdf5(path):
        kind = _read_h5(path, source, lambda f: "dgg_tf" if _str(f.attrs.get("format", "")) == FORMAT_TAG
                        else "vade_h5" if _keras_root(f) is not None else None)
    if kind == "dgg_tf":
        params, provenance = load_weights_h5(path)
        return check_params(params, config, source), provenance
    if kind == "vade_h5":
        return load_vade_h5(path, config), {"source": "vade_h5", "path": path}
    raise WeightsError(f"{source}: unrecognised weights format; accepted: {ACCEPTED}")


def load_autoencoder(path, config=None):
    """``load_any``, then require the whole autoencoder (encoder1..N, decoder1..N): the
    weights DGG starts from (the log-variance head, f2 and the GMM may be absent)."""
    params, provenance = load_any(path, config)
    needed = [f"{layer}/{p}" for layer in autoencoder_layers(config) for p in ("W", "b")]
    missing = [n for n in needed if n not in params]
    if missing:
        raise WeightsError(f"weights: {path} lacks {', '.join(missing)}; DGG starts from a full "
                           "autoencoder (encoder1..4 and decoder1..4)")
    return params, provenance


def _require_file(path, source, expected):
    if not os.path.exists(path):
        raise WeightsError(f"{source} does not exist (expected {expected})")


def _read_h5(path, source, read):
    """``read(open h5py.File)``, with any h5py/OS error turned into a WeightsError."""
    try:
        with h5py.File(path, "r") as f:
            return read(f)
    except WeightsError:
        raise
    except Exception as e:  # h5py raises OSError/KeyError/RuntimeError on damaged files
        raise WeightsError(f"{source}: cannot read it as HDF5 (truncated or corrupt?): {e}") from None


def _looks_hdf5(path):
    with open(path, "rb") as f:
        if f.read(8) == b"\x89HDF\r\n\x1a\n":
            return True
    return h5py.is_hdf5(path)


def _keras_root(f):
    """The group holding Keras' ``layer_names``: the root (Keras 1) or model_weights/ (Keras 2)."""
    if "layer_names" in f.attrs:
        return f
    if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
        return f["model_weights"]
    return None


def _str(value):
    return value.decode() if isinstance(value, bytes) else str(value)
