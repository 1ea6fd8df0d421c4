"""Weights as a dict of named NumPy arrays, and the files that hold them.

Names (the audit surface): ``encoder1/W`` ``encoder1/b`` ... ``encoder4/*``
(encoder4 = mean head), ``logvar/*``, ``decoder1/*`` (latent -> 2000) ...
``decoder4/*`` (-> 784), ``classifier/*``, ``gmm/mean`` and ``gmm/std``
[latent, K]. Kernels are in Keras layout [in, out].

Our own file format is one flat HDF5 file, one dataset per name, provenance as
file attributes (see pretrained/README.md); it is written to a temporary name
and renamed, so a reader never sees half a file. ``load_vade_h5`` and
``load_dgg_out`` read the original's autoencoder weights (docs/quirks.md, section 1);
``load_any`` tells the three formats apart.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess

import h5py
import keras
import numpy as np
import sklearn

from dgg_tf import backend
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.data import REPO
from dgg_tf.core.files import atomic_path, clean
from dgg_tf.numerics.models import dense_layers, encoder_sizes

FORMAT_TAG = "dgg_tf-weights-v1"


class WeightsError(ValueError):
    """A weights file or dict is missing, corrupt, or does not fit the model."""


def get_params(model) -> dict:
    """Every named array of a model (a DGGNetwork, Autoencoder or Siamese net)."""
    params = {}
    for name, layer in dense_layers(model).items():
        params[f"{name}/W"] = np.array(layer.kernel.numpy(), np.float32)
        params[f"{name}/b"] = np.array(layer.bias.numpy(), np.float32)
    gmm = getattr(model, "gmm", None)
    if gmm is not None:
        params["gmm/mean"] = np.array(gmm.mean.numpy(), np.float32)
        params["gmm/std"] = np.array(gmm.std.numpy(), np.float32)
    return params


def _model_variables(model):
    variables = {}
    for name, layer in dense_layers(model).items():
        variables[f"{name}/W"] = layer.kernel
        variables[f"{name}/b"] = layer.bias
    gmm = getattr(model, "gmm", None)
    if gmm is not None:
        variables["gmm/mean"] = gmm.mean
        variables["gmm/std"] = gmm.std
    return variables


def set_params(model, params: dict, partial: bool = False, source: str = "params"):
    """Assign named arrays to a model, checking names, shapes and finiteness.

    With ``partial=True`` names the model lacks are ignored and names the dict
    lacks keep their current values (e.g. loading autoencoder weights into DGG,
    whose logvar head, classifier and GMM are not pretrained). Returns the list
    of names assigned.
    """
    variables = _model_variables(model)
    unknown = sorted(set(params) - set(variables))
    missing = sorted(set(variables) - set(params))
    if not partial and (unknown or missing):
        raise WeightsError(f"{source}: names do not match the model; missing {missing}, "
                           f"unexpected {unknown}")
    assigned = []
    for name, value in params.items():
        if name not in variables:
            continue
        value = np.asarray(value, np.float32)
        var = variables[name]
        if tuple(value.shape) != tuple(var.shape):
            raise WeightsError(f"{source}: {name} has shape {tuple(value.shape)}, the model "
                               f"expects {tuple(var.shape)}")
        if not np.all(np.isfinite(value)):
            raise WeightsError(f"{source}: {name} contains NaN or Inf")
        var.assign(value)
        assigned.append(name)
    if not assigned:
        raise WeightsError(f"{source}: none of its arrays fits the model")
    return assigned


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


def library_versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            **backend.versions(), "keras": keras.__version__,
            "scikit-learn": sklearn.__version__, "h5py": h5py.__version__,
            "dgg_tf_commit": source_commit()}


def save_weights_h5(path, params: dict, provenance: dict | None = None):
    """Write ``params`` as one flat HDF5 file; provenance dict values become attributes
    (non-string values are stored as JSON). Atomic: temporary file, then rename."""
    path = os.fspath(path)
    provenance = dict(provenance or {})
    provenance.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat())
    provenance.setdefault("library_versions", library_versions())
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT_TAG
        for key, value in provenance.items():
            f.attrs[key] = value if isinstance(value, str) else json.dumps(clean(value))
        for name in sorted(params):
            value = np.asarray(params[name], np.float32)
            if not np.all(np.isfinite(value)):
                raise WeightsError(f"refusing to save {name}: it contains NaN or Inf")
            f.create_dataset(name, data=value)


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


# ---------------------------------------------------------------------------
# Shapes, checks and the original formats (docs/quirks.md, section 1)

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
