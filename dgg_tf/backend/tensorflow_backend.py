"""What dgg_tf does differently on TensorFlow (see ``dgg_tf.backend``)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from dgg_tf.core.files import aligned_float32

_LOG_EPS = []


def set_seed(seed):
    """Seed Python, NumPy, TensorFlow and Keras' global seed."""
    keras.utils.set_random_seed(seed)


def log_eps():
    """The original's epsilon inside log(xhat), log(1 - xhat) and log(gamma). Held in a
    variable so that TensorFlow's graph optimiser cannot fold it into a constant: it
    rewrites (1 - xhat) + 1e-10 as (1 + 1e-10) - xhat, which in float32 is 1 - xhat, so
    a saturated decoder output (xhat == 1.0) would give log(0) = -inf in the compiled
    step where the original gets log(1e-10). Made on first use: a variable made at
    import would fix TensorFlow's devices before ``split_cpu`` could split them."""
    if not _LOG_EPS:
        _LOG_EPS.append(tf.Variable(1e-10, trainable=False, dtype=tf.float32, name="log_eps"))
    return _LOG_EPS[0]

#: ``compile(jit_compile=...)`` of the steps: not XLA-compiled as a whole, so that the
#: step keeps the kernels, and so the float32 rounding, that the replay check compares
#: (the optimisers compile their own update: ``OptimizerBase``).
JIT_COMPILE = False

#: The widest float of the backend: the optimisers' bias corrections use it.
WIDE_FLOAT = "float64"


class Trainer:
    """Mixin of a ``keras.Model`` whose step is ``train_on(data)`` (backend-neutral).

    ``train_step`` is the TensorFlow form (stateful, traced by ``fit``); ``apply_loss``
    differentiates with a GradientTape and applies ``self.optimizer``."""

    def train_step(self, data):
        return self.train_on(data)

    def apply_loss(self, loss_fn):
        """``loss, aux = loss_fn()``; one optimiser update of the trainable variables
        from the gradient of ``loss``; returns ``(loss, aux)``."""
        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss, aux

    def run_step(self, data):
        """One step outside ``fit``, updating the variables; returns its logs. Traced
        (``tf.function``, not XLA) as ``fit`` traces ``train_step``, so that a given step
        runs the kernels of a training run: eager kernels round differently, and after
        3 Adam steps that alone moves a parameter tensor by up to 8e-4 relative
        (``benchmarks/step_rounding.py``)."""
        cache = self.__dict__.setdefault("_run_step_fn", {})   # outside Keras tracking
        if "fn" not in cache:
            cache["fn"] = tf.function(self.train_step, reduce_retracing=True)
        return cache["fn"](data)


def gradient_function(variables, fn, compile=True):
    """``f(*args) -> (loss, aux, grads)`` for ``loss, aux = fn(*args)`` and the gradient
    of ``loss`` for each of ``variables``; traced once per input shape if ``compile``."""
    def run(*args):
        with tf.GradientTape() as tape:
            loss, aux = fn(*args)
        return loss, aux, tape.gradient(loss, variables)
    return tf.function(run) if compile else run


def compiled(fn):
    """``fn`` traced into one TensorFlow graph (as ``fit`` runs a step), for benchmarks."""
    return tf.function(fn)


def normal(shape, key, counter):
    """Standard normal float32 noise, a function of the integers ``key`` (a Python int)
    and ``counter`` (a scalar tensor): TensorFlow's stateless Philox generator."""
    return tf.random.stateless_normal(
        shape, seed=tf.stack([tf.constant(key, tf.int64), tf.cast(counter, tf.int64)]),
        alg="philox")


def batch_total(local):
    """The whole batch's size from a replica's ``local`` size (float32)."""
    replica = tf.distribute.get_replica_context()
    return replica.all_reduce("sum", local) if replica else local


def sum_over_replicas(values):
    """``values`` summed over the replicas of a ``tf.distribute`` strategy."""
    replica = tf.distribute.get_replica_context()
    return replica.all_reduce("sum", values) if replica else values


def device_array(owner, name, array):
    """``array`` where the steps read it. Under tf.distribute, a variable mirrored on every
    device. Otherwise TensorFlow reads the (64-byte aligned) array's own memory through
    DLPack: ``tf.convert_to_tensor`` would add a copy of x and a transient second one
    (440 MB for MNIST); on a GPU the one copy made is the device's. ``owner`` keeps the
    host array alive as long as the tensor."""
    if tf.distribute.has_strategy():
        return tf.Variable(array, trainable=False, name=name)
    if array.dtype != np.float32:
        return tf.constant(array)
    host = aligned_float32(array)
    setattr(owner, f"_{name}_host", host)
    tensor = tf.experimental.dlpack.from_dlpack(host.__dlpack__())
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        with tf.device(gpus[0].name):
            tensor = tf.identity(tensor)
    return tensor


#: The fewest steps a fit must plan in all (``plan_steps``) for its update to run as
#: one XLA pass: the compile (about 1 s a network on a CPU) pays back after some 80-200
#: steps (``benchmarks/fused_update.py``); the test suite's runs plan a few dozen.
FUSE_MIN_STEPS = 500


def plan_steps(optimizer, steps):
    """Tell ``optimizer`` how many steps the fit about to trace its update plans in all
    (every epoch of the run, resumed or not, so that a resumed run takes the same path)."""
    optimizer.planned_steps = int(steps)


class OptimizerBase(keras.optimizers.Optimizer):
    """Runs ``update_step`` for every variable inside one XLA-compiled function.

    Without it each elementwise operation of an update is its own TensorFlow kernel
    and its own pass over the 3.4 M DGG parameters: about 15 passes for Adam, some
    9 ms of a 0.22 s float32 training step. XLA fuses them into one pass per tensor
    (about 4 ms). The operations are the same float32 ones; XLA may contract
    ``a * b + c`` into a fused multiply-add, so a result can differ from the unfused
    kernels in the last bit (as PyTorch's own CPU kernels may). It overrides the hook
    that Keras' TensorFlow backend calls from ``apply`` (a private name: a test checks
    that it is still called; if not, updates stay right, only slower). On JAX the whole
    step is one XLA program already.

    A fit that plans fewer than ``FUSE_MIN_STEPS`` steps (``plan_steps``) keeps Keras'
    own update (the same formula, unfused): XLA's compile would cost more than the pass
    saves. Steps outside a fit (``net.step``) plan none and are fused.
    """

    #: Steps the fit that traces the update plans in all; None: not known (fused).
    planned_steps = None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        variables = list(trainable_variables)
        short = self.planned_steps is not None and self.planned_steps < FUSE_MIN_STEPS
        if tf.distribute.has_strategy() or short:
            # Under tf.distribute, Keras' own path sums the replicas' gradients and updates
            # each variable on every device; the update is the same formula, unfused.
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        key = tuple(id(v) for v in variables)
        cache = self.__dict__.setdefault("_one_pass", {})  # outside Keras tracking
        if key not in cache:
            def update_all(grads, learning_rate):
                for gradient, variable in zip(grads, variables):
                    self.update_step(gradient, variable, learning_rate)
            cache[key] = tf.function(update_all, jit_compile=True)
        cache[key](list(grads), tf.convert_to_tensor(learning_rate))


# ---------------------------------------------------------------- distribution
def split_cpu(n):
    """Make ``n`` logical CPU devices; must run before TensorFlow first uses a device."""
    if n is None or n <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))])
    except RuntimeError as e:
        raise ValueError(f"cannot split the CPU into {n} devices: TensorFlow has already "
                         f"initialised its devices ({e})") from None


def make_strategy(name="default"):
    """``default``: TensorFlow's default (one device). ``mirrored``: MirroredStrategy over
    every GPU, or every logical CPU when there is no GPU (see ``split_cpu``)."""
    if name == "default":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def strategy_scope(strategy=None):
    """The scope in which a model is built for ``strategy`` (None: the current one)."""
    return (strategy or tf.distribute.get_strategy()).scope()


def model_scope(model):
    """The scope of the strategy ``model`` was built in (its variables may be mirrored)."""
    return model.distribute_strategy.scope()


def replicas(model):
    """How many replicas train ``model``."""
    return model.distribute_strategy.num_replicas_in_sync


def set_precision(precision):
    """Make the process's float32 matrix products what ``precision`` (a
    ``DGGConfig.precision``) asks for: TensorFlow multiplies float32 in TensorFloat-32 (10
    mantissa bits) on GPUs that have it unless told not to, which is not the original's
    float32 computation; only ``tf32`` allows it. No effect on a CPU."""
    tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")


def versions():
    """The backend's library versions and the float32 matrix-product precision in
    force, for provenance."""
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    return {"backend": "tensorflow", "tensorflow": tf.__version__,
            "matmul_precision": "tensorfloat32" if tf32 else "highest"}
