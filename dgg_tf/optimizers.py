"""PyTorch-exact optimisers and the StepLR schedule, as Keras 3 optimisers.

The original uses ``torch.optim.Adam`` / ``SGD`` with ``weight_decay``: an L2
term ``weight_decay * param`` added to the gradient before the update. Keras'
own ``weight_decay`` is decoupled (AdamW-style) and Keras' Adam places epsilon
differently, so neither is the same computation; these classes are.

Both run their whole update in one XLA-compiled function (``OnePassUpdate``).
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from .config import CHOICES


class OnePassUpdate(keras.optimizers.Optimizer):
    """Runs ``update_step`` for every variable inside one XLA-compiled function.

    Without it each elementwise operation of an update is its own TensorFlow kernel
    and its own pass over the 3.4 M DGG parameters: about 15 passes for Adam, some
    9 ms of a 0.22 s float32 training step. XLA fuses them into one pass per tensor
    (about 4 ms). The operations are the same float32 ones; XLA may contract
    ``a * b + c`` into a fused multiply-add, so a result can differ from the unfused
    kernels in the last bit (as PyTorch's own CPU kernels may). It overrides the hook
    that Keras' TensorFlow backend calls from ``apply`` (a private name: a test checks
    that it is still called; if not, updates stay right, only slower).
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if tf.distribute.has_strategy():
            # Under tf.distribute, Keras' own path sums the replicas' gradients and updates
            # each variable on every device; the update is the same formula, unfused.
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        variables = list(trainable_variables)
        key = tuple(id(v) for v in variables)
        cache = self.__dict__.setdefault("_one_pass", {})  # outside Keras tracking
        if key not in cache:
            def update_all(grads, learning_rate):
                for gradient, variable in zip(grads, variables):
                    self.update_step(gradient, variable, learning_rate)
            cache[key] = tf.function(update_all, jit_compile=True)
        cache[key](list(grads), tf.convert_to_tensor(learning_rate))


@keras.saving.register_keras_serializable(package="dgg_tf")
class TorchAdam(OnePassUpdate):
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
        if self.warmup_steps:   # a diagnostic (config.DIAGNOSTICS); 0 leaves the step as it was
            lr = lr * ops.cast(warmup_factor(self.iterations, self.warmup_steps), variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.l2:
            g = g + self.l2 * variable
        self.assign(m, self.beta_1 * m + (1.0 - self.beta_1) * g)
        self.assign(v, self.beta_2 * v + (1.0 - self.beta_2) * ops.square(g))
        # bias corrections in float64, as PyTorch computes them (Python floats):
        # with float32(0.999), 1 - beta_2 ** t is off by ~1e-5 relative
        t = ops.cast(self.iterations + 1, "float64")
        bias1, bias2 = (ops.cast(1.0 - ops.power(ops.convert_to_tensor(b, "float64"), t), variable.dtype)
                        for b in (self.beta_1, self.beta_2))
        denom = ops.sqrt(v) / ops.sqrt(bias2) + self.epsilon
        self.assign_sub(variable, (lr / bias1) * m / denom)


@keras.saving.register_keras_serializable(package="dgg_tf")
class TorchSGD(OnePassUpdate):
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


def warmup_factor(iterations, warmup_steps):
    """min(1, (t + 1) / N) for the update of step t = ``iterations`` (0-based): the
    linear warm-up of ``lr_warmup_steps`` (a diagnostic, in neither code nor paper).
    ``iterations`` is the optimiser's own step counter, so a resumed run continues the
    ramp where it stopped."""
    t = ops.cast(iterations, "float32")
    return ops.minimum(1.0, (t + 1.0) / float(warmup_steps))


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
