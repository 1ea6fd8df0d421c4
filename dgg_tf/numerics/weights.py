"""Putting params dicts into Keras models and reading them out (``get_params``,
``set_params``), the library versions a run records, and writing a weights file with
them (``save_weights_h5``). Weight files themselves are
``core.weight_files``."""
from __future__ import annotations

import datetime
import json
import os
import platform

import h5py
import keras
import numpy as np
import sklearn

from dgg_tf import backend
from dgg_tf.core.files import atomic_path, clean
from dgg_tf.core.weight_files import FORMAT_TAG, WeightsError, source_commit
from dgg_tf.numerics.models import dense_layers


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


def param_variables(model) -> dict:
    """The model's variable of each ``get_params`` name (what ``set_params`` assigns)."""
    return _model_variables(model)


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
