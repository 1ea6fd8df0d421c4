"""What dgg_tf does differently on JAX (see ``dgg_tf.backend``).

Keras' JAX trainer calls ``train_step(state, data)`` with every variable's value in
``state`` and expects the new values back. The backend-neutral step is written with
variables (``variable.assign``, layers that read their weights), so ``Trainer`` runs it
inside a ``keras.StatelessScope`` that maps each variable to its value in ``state`` and
collects the assignments: the same pattern as Keras' own ``stateless_call`` and
``optimizer.stateless_apply``.
"""
from __future__ import annotations

import contextlib
import os

import jax
import keras
from keras.src.backend.common.stateless_scope import get_stateless_scope


def log_eps():
    """The original's epsilon inside log(xhat), log(1 - xhat) and log(gamma), as a value
    XLA cannot see through (``optimization_barrier``). As a plain constant, XLA's
    algebraic simplifier reassociates (1 - xhat) + 1e-10 into (1 + 1e-10) - xhat, which
    in float32 is 1 - xhat: a saturated decoder output (xhat == 1.0) then gives
    log(0) = -inf in the compiled step, where the original gets log(1e-10) (measured on
    the CPU under ``jax.jit``: log(1 - sigmoid(17) + 1e-10) = -inf). TensorFlow's graph
    optimiser does the same (see the TensorFlow module)."""
    return jax.lax.optimization_barrier(jax.numpy.asarray(1e-10, "float32"))

#: The matrix-product precision dgg_tf gives JAX unless ``JAX_DEFAULT_MATMUL_PRECISION``
#: says otherwise: "highest", float32 products in float32 on every device. JAX's default
#: lets a GPU use TF32 (10 mantissa bits), which is not the original's float32
#: computation. Set for the whole process, as the environment variable would, so that
#: the encoder passes outside the compiled steps (the GMM init, predictions) get it too;
#: ``set_precision`` changes it for a run whose config asks for ``tf32``.
MATMUL_PRECISION = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION") or "highest"
jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION)

#: JAX's matrix-product precision for each ``DGGConfig.precision`` (mixed_bfloat16
#: multiplies in bfloat16 whatever this says; its float32 parts stay exact).
_MATMUL_FOR = {"float32": "highest", "tf32": "tensorfloat32", "mixed_bfloat16": "highest"}


def set_precision(precision):
    """Make the process's float32 matrix products what ``precision`` (a
    ``DGGConfig.precision``) asks for. ``JAX_DEFAULT_MATMUL_PRECISION``, when set, wins
    (``versions`` records what is in force)."""
    global MATMUL_PRECISION
    MATMUL_PRECISION = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION") or _MATMUL_FOR[precision]
    jax.config.update("jax_default_matmul_precision", MATMUL_PRECISION)

#: ``compile(jit_compile=...)`` of the steps: on JAX the step is one jit-compiled program
#: (without it Keras would run it op by op).
JIT_COMPILE = True

#: The widest float of the backend: float32 unless JAX runs with x64 enabled. The
#: optimisers compute their bias corrections in it (in a form exact to float32 rounding).
WIDE_FLOAT = "float64" if jax.config.jax_enable_x64 else "float32"


def _groups(model):
    """The variables of Keras' JAX training state, in its order."""
    return (model.trainable_variables, model.non_trainable_variables,
            model.optimizer.variables, model.metrics_variables)


def _current(scope, variable):
    value = scope.get_current_value(variable)
    return variable.value if value is None else value


class Trainer:
    """Mixin of a ``keras.Model`` whose step is ``train_on(data)`` (backend-neutral):
    ``train_step`` in the JAX form of the keras.io guide, by running ``train_on`` in a
    stateless scope over ``state``."""

    def train_step(self, state, data):
        groups = _groups(self)
        mapping = [(v, x) for vs, xs in zip(groups, state) for v, x in zip(vs, xs)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self.train_on(data)
        return logs, tuple([_current(scope, v) for v in vs] for vs in groups)

    def apply_loss(self, loss_fn):
        """``loss, aux = loss_fn()``; one optimiser update of the trainable variables
        from ``jax.value_and_grad`` of ``loss``, by ``optimizer.stateless_apply``; the new
        values are assigned in the enclosing stateless scope. Returns ``(loss, aux)``."""
        variables = self.trainable_variables
        values = [v.value for v in variables]
        outer = get_stateless_scope()

        def pure(trainable):
            scope = keras.StatelessScope()
            scope.state_mapping = dict(outer.state_mapping) if outer else {}
            scope.state_mapping.update({id(v): x for v, x in zip(variables, trainable)})
            with scope:
                return loss_fn()
        (loss, aux), grads = jax.value_and_grad(pure, has_aux=True)(values)
        optimizer_variables = self.optimizer.variables
        new_values, new_optimizer = self.optimizer.stateless_apply(
            [v.value for v in optimizer_variables], grads, values)
        for v, x in zip(variables, new_values):
            v.assign(x)
        for v, x in zip(optimizer_variables, new_optimizer):
            v.assign(x)
        return loss, aux

    def run_step(self, data):
        """One step outside ``fit`` (jit-compiled once per input shape), updating the
        variables; returns its logs."""
        cache = self.__dict__.setdefault("_run_step_jit", {})  # outside Keras tracking
        if "fn" not in cache:
            cache["fn"] = jax.jit(self.train_step)
        groups = _groups(self)
        logs, state = cache["fn"](tuple([v.value for v in vs] for vs in groups), data)
        for vs, xs in zip(groups, state):
            for v, x in zip(vs, xs):
                v.assign(x)
        return logs


def gradient_function(variables, fn, compile=True):
    """``f(*args) -> (loss, aux, grads)`` for ``loss, aux = fn(*args)`` and the gradient
    of ``loss`` for each of ``variables`` (read when ``f`` is called); jit-compiled if
    ``compile``."""
    variables = list(variables)

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    def both(values, *args):
        (loss, aux), grads = jax.value_and_grad(pure, has_aux=True)(values, *args)
        return loss, aux, grads
    run = jax.jit(both) if compile else both
    return lambda *args: run([v.value for v in variables], *args)


def compiled(fn):
    """``fn`` as one jit-compiled XLA program, for benchmarks."""
    return jax.jit(fn)


def normal(shape, key, counter):
    """Standard normal float32 noise, a function of the integers ``key`` (a Python int)
    and ``counter`` (a scalar): JAX's threefry generator, key folded with the counter."""
    base = jax.random.key(key % (2 ** 32))
    return jax.random.normal(jax.random.fold_in(base, counter), shape, "float32")


def batch_total(local):
    """The whole batch's size: under ``keras.distribution`` the step sees the whole
    (sharded) batch, so it is ``local``."""
    return local


def sum_over_replicas(values):
    """The step's values are the whole batch's already (see ``batch_total``)."""
    return values


def device_array(owner, name, array):
    """``array`` as a non-trainable Keras variable of ``owner`` (a layer the model tracks
    while it trains): JAX's training state passes it to the compiled step as an argument
    (a closed-over array would be compiled in as a constant, a copy per program)."""
    return owner.add_weight(shape=array.shape, dtype=str(array.dtype), trainable=False,
                            initializer=lambda shape, dtype: array, name=name)


#: The optimisers' base: the whole step is one XLA program on JAX already.
OptimizerBase = keras.optimizers.Optimizer


def plan_steps(optimizer, steps):
    """Recorded only: on JAX the whole step is one program (TensorFlow's choice of update
    path reads it)."""
    optimizer.planned_steps = int(steps)


# ---------------------------------------------------------------- distribution
def split_cpu(n):
    """Make ``n`` host (CPU) devices; must run before JAX first uses a device."""
    if n is None or n <= 1:
        return
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError as e:
        raise ValueError(f"cannot split the CPU into {n} devices: JAX has already "
                         f"initialised its devices ({e})") from None


def make_strategy(name="default"):
    """``default``: None (one device). ``mirrored``: ``keras.distribution.DataParallel``
    over every device (the GPUs, or the host devices of ``split_cpu``): the batch is
    sharded, the variables replicated, and the compiled step sums over the whole batch."""
    if name == "default":
        return None
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


def strategy_scope(strategy=None):
    """The scope in which a model is built and trained for ``strategy``."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def model_scope(model):
    """Nothing to enter: the distribution in force is global (``strategy_scope``)."""
    return contextlib.nullcontext()


def replicas(model):
    """How many devices share each batch under the distribution in force."""
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def set_seed(seed):
    """Seed Python, NumPy and Keras' global seed as ``keras.utils.set_random_seed``
    does, without its ``tf.random.set_seed``: that imports TensorFlow (and its C++
    start-up lines) whenever it is installed, which a JAX run does not need."""
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils
    if not hasattr(rng_utils, "GLOBAL_RANDOM_SEED"):    # another Keras: its own way
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def versions():
    """The backend's library versions, for provenance."""
    return {"backend": "jax", "jax": jax.__version__, "matmul_precision": MATMUL_PRECISION}
