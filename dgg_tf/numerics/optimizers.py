"""PyTorch-exact optimisers and the StepLR schedule, as Keras 3 optimisers.

The original uses ``torch.optim.Adam`` / ``SGD`` with ``weight_decay``: an L2
term ``weight_decay * param`` added to the gradient before the update. Keras'
own ``weight_decay`` is decoupled (AdamW-style) and Keras' Adam places epsilon
differently, so neither is the same computation; these classes are.

Their update steps are ``keras.ops`` only. On TensorFlow each update runs as one
XLA-compiled function (``backend.OptimizerBase``); on JAX the whole step is one
program already.
"""
from __future__ import annotations

import math

import keras
from keras import ops

from dgg_tf import backend
from dgg_tf.core.config import CHOICES


@keras.saving.register_keras_serializable(package="dgg_tf")
class TorchAdam(backend.OptimizerBase):
    """``torch.optim.Adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=l2)``."""

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 l2=0.0, warmup_steps=0, name="torch_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.l2 = beta_1, beta_2, epsilon, l2
        self.warmup_steps = int(warmup_steps)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "l2": self.l2, "warmup_steps": self.warmup_steps}

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._v = [self.add_variable_from_reference(v, "v") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        m, v = self._m[i], self._v[i]
        lr = ops.cast(learning_rate, variable.dtype)
        if warmup_on(self.warmup_steps):   # a diagnostic (config.DIAGNOSTICS); 0: as it was
            lr = lr * ops.cast(warmup_factor(self.iterations, self.warmup_steps), variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.l2:
            g = g + self.l2 * variable
        self.assign(m, self.beta_1 * m + (1.0 - self.beta_1) * g)
        self.assign(v, self.beta_2 * v + (1.0 - self.beta_2) * ops.square(g))
        bias1, bias2 = (ops.cast(bias_correction(b, self.iterations + 1), variable.dtype)
                        for b in (self.beta_1, self.beta_2))
        denom = ops.sqrt(v) / ops.sqrt(bias2) + self.epsilon
        self.assign_sub(variable, (lr / bias1) * m / denom)


@keras.saving.register_keras_serializable(package="dgg_tf")
class TorchSGD(backend.OptimizerBase):
    """``torch.optim.SGD(lr, momentum, weight_decay=l2)`` (no dampening, no Nesterov):
    buf = momentum * buf + (g + l2 * p); p -= lr * buf."""

    def __init__(self, learning_rate=0.01, momentum=0.0, l2=0.0, name="torch_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.l2 = momentum, l2

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "l2": self.l2}

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._buf = [self.add_variable_from_reference(v, "momentum") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        buf = self._buf[self._get_variable_index(variable)]
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.l2:
            g = g + self.l2 * variable
        self.assign(buf, self.momentum * buf + g)
        self.assign_sub(variable, lr * buf)


def bias_correction(beta, t):
    """1 - beta ** t for step t (1-based), exact to float32 rounding, as PyTorch computes
    it from Python floats: in float64 where the backend has it, else (JAX without x64)
    as -expm1(t log beta), which keeps the float32 result's relative error near 1e-7.
    With float32(0.999), 1 - beta_2 ** t would be off by ~1e-5 relative."""
    if backend.WIDE_FLOAT == "float64":
        return 1.0 - ops.power(ops.convert_to_tensor(beta, "float64"), ops.cast(t, "float64"))
    return -ops.expm1(ops.cast(t, "float32") * math.log(beta))


def warmup_on(warmup_steps):
    """Whether the update multiplies by ``warmup_factor``: a count (a Python number)
    when it is not 0; a traced per-cell count (``stages.cells``: cells with and without
    warm-up in one program) always, since its factor at N = 0 is min(1, inf) = 1 exactly."""
    return not isinstance(warmup_steps, (int, float)) or warmup_steps != 0


def warmup_factor(iterations, warmup_steps):
    """min(1, (t + 1) / N) for the update of step t = ``iterations`` (0-based): the
    linear warm-up of ``lr_warmup_steps`` (a diagnostic, in neither code nor paper).
    ``iterations`` is the optimiser's own step counter, so a resumed run continues the
    ramp where it stopped. N may be a traced float32 scalar (one per cell)."""
    t = ops.cast(iterations, "float32")
    n = float(warmup_steps) if isinstance(warmup_steps, (int, float)) else warmup_steps
    return ops.minimum(1.0, (t + 1.0) / n)


def step_lr(base, gamma, step, epoch, mode="code"):
    """Learning rate of 0-based ``epoch`` under StepLR(step, gamma).

    "code": the original calls ``scheduler.step()`` at the START of each epoch,
    so epoch e runs at base * gamma ** ((e + 1) // step) (Q8: one epoch early).
    "nominal": base * gamma ** (e // step).
    """
    if mode == "code":
        k = (epoch + 1) // step
    elif mode == "nominal":
        k = epoch // step
    else:   # a value added to CHOICES needs its own formula here
        raise ValueError(f"lr_schedule must be one of {', '.join(CHOICES['lr_schedule'])} "
                         f"with a formula in step_lr, got {mode!r}")
    return float(base * gamma ** k)
