"""dgg_tf: a Keras port of DGG (Yang et al., ICCV 2019), faithful to the original
PyTorch code, with named switches for every paper/code discrepancy.

The package is built in layers, one folder each (README, Layout): ``core`` (no
TensorFlow), ``report`` (no TensorFlow), ``backend``, ``numerics``, ``train``,
``stages``, ``audit``, ``api``, ``sweep`` and ``cli``. ``dgg_tf.DGG`` (the scikit-learn
style estimator) is imported on first use, so that ``import dgg_tf`` stays light (no
TensorFlow, no environment changes)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

from dgg_tf.core.config import DGGConfig

__all__ = ["DGG", "DGGConfig"]
__version__ = "0.3.0"

#: Where each module of the flat layout (before the layer folders) lives now: outside
#: code that imports an old name (``dgg_tf.pipeline``, ``dgg_tf.training``, ...) gets
#: the module itself, the same object, so that patching it patches the real one.
MOVED = {
    "config": "core.config", "files": "core.files", "metrics": "core.metrics",
    "tables": "core.tables", "data": "core.data", "stopping": "core.stopping",
    "console": "core.console", "rundir": "core.rundir", "run_summary": "core.record",
    "devices": "backend.devices",
    "models": "numerics.models", "objective": "numerics.objective",
    "objective_numpy": "numerics.objective_numpy", "graph": "numerics.graph",
    "optimizers": "numerics.optimizers", "step_metrics": "numerics.step_metrics",
    "weights": "numerics.weights", "evaluation": "numerics.evaluation", "knn": "numerics.knn",
    "pretrain": "stages.pretrain", "siamese": "stages.siamese",
    "initialise": "stages.initialise", "training": "stages.dgg",
    "collapse": "stages.watch", "neighbors": "stages.neighbors", "timing": "stages.timing",
    "pipeline": "api.pipeline", "estimator": "api.estimator", "commands": "cli.commands",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import dgg_tf.<old name>`` with the module at its new place."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname[len(__name__) + 1:] if fullname.startswith(__name__ + ".") else None
        return importlib.util.spec_from_loader(fullname, self) if old in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{MOVED[spec.name[len(__name__) + 1:]]}")

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name):
    if name == "DGG":
        from dgg_tf.api.estimator import DGG  # lazy: import dgg_tf stays light (no TF)
        return DGG
    raise AttributeError(f"module 'dgg_tf' has no attribute {name!r}")
