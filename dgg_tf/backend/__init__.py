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
- ``split_cpu``, ``make_strategy``, ``strategy_scope``, ``model_scope``, ``replicas``:
  ``tf.distribute`` on TensorFlow, ``keras.distribution.DataParallel`` on JAX;
- ``JIT_COMPILE``, ``log_eps``, ``WIDE_FLOAT``, ``versions``.
"""
from __future__ import annotations

import keras

NAME = keras.backend.backend()
SUPPORTED = ("tensorflow", "jax")

if NAME == "tensorflow":
    from .tensorflow_backend import (  # noqa: F401  # lazy: only the chosen backend's
        JIT_COMPILE, WIDE_FLOAT, OptimizerBase, Trainer, batch_total, compiled,
        device_array, gradient_function, log_eps, make_strategy, model_scope, normal, replicas,
        split_cpu, strategy_scope, sum_over_replicas, versions)
elif NAME == "jax":
    from .jax_backend import (  # noqa: F401  # lazy: only the chosen backend's
        JIT_COMPILE, WIDE_FLOAT, OptimizerBase, Trainer, batch_total, compiled,
        device_array, gradient_function, log_eps, make_strategy, model_scope, normal, replicas,
        split_cpu, strategy_scope, sum_over_replicas, versions)
else:
    raise ImportError(f"dgg_tf runs on the Keras backends {', '.join(SUPPORTED)}; this Keras "
                      f"uses {NAME!r}: set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")

__all__ = ["NAME", "SUPPORTED", "JIT_COMPILE", "WIDE_FLOAT", "OptimizerBase",
           "Trainer", "batch_total", "compiled", "device_array", "gradient_function", "log_eps",
           "make_strategy", "model_scope", "normal", "replicas", "split_cpu", "strategy_scope",
           "sum_over_replicas", "versions"]
