"""The one place where dgg_tf differs by Keras backend.

Everything numerical is written in ``keras.ops``; what Keras leaves to each backend is
here, one small module each (``tensorflow_backend``, ``jax_backend``), chosen the Keras
way, by ``keras.backend.backend()`` (``KERAS_BACKEND``, or ``~/.keras/keras.json``):

- ``Trainer``: the mixin of every model with its own step: ``train_step`` in the
  backend's form (the keras.io guides "Customizing what happens in fit()"), and
  ``apply_loss`` ("gradients, then apply": a GradientTape, or ``jax.value_and_grad``
  and ``optimizer.stateless_apply``), plus ``run_step`` (one step outside ``fit``);
- ``gradient_function``: a compiled loss-and-gradients function, for the audit and the
  timed warm-up; ``compiled``: any function compiled the backend's way (benchmarks);
- ``normal``: standard normal noise as a function of an integer key (Keras' own
  ``keras.random`` takes a seed tensor only on JAX);
- ``batch_total`` / ``sum_over_replicas``: sums over the replicas of ``tf.distribute``
  (under JAX's ``keras.distribution`` the step sees the whole batch, so both are plain);
- ``device_array``: the data where the steps read it without a copy per step;
- ``OptimizerBase``: the optimisers' base (on TensorFlow, one XLA pass per update);
  ``plan_steps``: the steps a fit plans, which decide that pass (short fits skip it);
- ``split_cpu``, ``make_strategy``, ``strategy_scope``, ``model_scope``, ``replicas``:
  ``tf.distribute`` on TensorFlow, ``keras.distribution.DataParallel`` on JAX;
- ``set_seed``: ``keras.utils.set_random_seed``, which on JAX leaves TensorFlow unloaded;
- ``set_precision``: the float32 matrix products a config's ``precision`` asks for
  (TensorFloat-32 on a GPU only for ``tf32``: both libraries would use it by default);
- ``JIT_COMPILE``, ``log_eps``, ``WIDE_FLOAT``, ``versions``.

Importing this package loads nothing: the chosen backend's module is imported when one
of these names is first used, so that ``backend.startup`` (picking the backend and
starting TensorFlow quietly) and ``backend.devices`` come before Keras starts.
"""
from __future__ import annotations

import importlib

SUPPORTED = ("tensorflow", "jax")
__all__ = ["NAME", "SUPPORTED", "JIT_COMPILE", "WIDE_FLOAT", "OptimizerBase",
           "Trainer", "batch_total", "compiled", "device_array", "gradient_function", "log_eps",
           "make_strategy", "model_scope", "normal", "plan_steps", "replicas",
           "set_precision", "set_seed", "split_cpu", "strategy_scope", "sum_over_replicas",
           "versions"]


def _chosen():
    """The module of the backend Keras runs on (importing Keras, if nobody has)."""
    import keras  # lazy: Keras starts its backend on import; only when a name is used
    name = keras.backend.backend()
    if name not in SUPPORTED:
        raise ImportError(f"dgg_tf runs on the Keras backends {', '.join(SUPPORTED)}; this "
                          f"Keras uses {name!r}: set KERAS_BACKEND=tensorflow or "
                          "KERAS_BACKEND=jax")
    return importlib.import_module(f"{__name__}.{name}_backend")


def __getattr__(name):
    if name == "NAME":
        return _chosen().__name__.rsplit(".", 1)[1][:-len("_backend")]
    if name in __all__:
        value = getattr(_chosen(), name)
        globals()[name] = value         # later lookups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
