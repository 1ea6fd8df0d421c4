"""The ``precision`` setting's float32 matrix products (``backend.set_precision``): only
``tf32`` lets a GPU multiply float32 in TensorFloat-32 (10 mantissa bits), which both
TensorFlow and JAX would otherwise do by default; the run record says what was in force.
On a CPU (no TensorFloat-32) ``tf32`` computes exactly what ``float32`` computes."""
import os
import types

import numpy as np
import pytest

from dgg_tf import backend
from dgg_tf.api.core import start_record
from dgg_tf.core.config import CHOICES, DGGConfig
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.stages.dgg import compile_dgg

pytestmark = pytest.mark.backends

EXPECTED = {"float32": "highest", "tf32": "tensorfloat32", "mixed_bfloat16": "highest"}
TINY = DGGConfig(input_dim=12, encoder_dims=(9, 8, 16), latent_dim=3, n_clusters=4,
                 batch_size=5, num_neighbors=3, epochs=1)


@pytest.fixture
def restore_float32():
    yield
    backend.set_precision("float32")      # process-wide: leave the default for other tests


@pytest.fixture
def no_env_override():
    if os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"):
        pytest.skip("JAX_DEFAULT_MATMUL_PRECISION overrides the config")


@pytest.mark.parametrize("precision", CHOICES["precision"])
def test_each_precision_sets_and_records_its_matrix_products(precision, restore_float32,
                                                             no_env_override):
    backend.set_precision(precision)
    assert backend.versions()["matmul_precision"] == EXPECTED[precision]
    if backend.NAME == "tensorflow":
        import tensorflow as tf
        assert tf.config.experimental.tensor_float_32_execution_enabled() == (
            precision == "tf32")
    else:
        import jax
        assert jax.config.jax_default_matmul_precision == EXPECTED[precision]


def test_the_run_record_holds_the_precision_in_force(restore_float32, no_env_override):
    inputs = types.SimpleNamespace(x=np.zeros((4, 12), np.float32), neighbors={},
                                   weights={}, fingerprints={})
    for precision in ("tf32", "float32"):
        record = start_record(TINY.replace(precision=precision), inputs)
        assert record.library_versions["matmul_precision"] == EXPECTED[precision]


def _one_step(config, batch):
    backend.set_seed(0)
    net = compile_dgg(DGGNetwork(config))
    logs = net.step(batch)
    return float(np.asarray(logs["loss"])), [np.asarray(v) for v in net.trainable_weights]


def test_tf32_on_a_cpu_is_float32(restore_float32):
    if any(d.platform != "cpu" for d in _devices()):
        pytest.skip("TensorFloat-32 exists only on GPUs: here the two may differ")
    rng = np.random.default_rng(0)
    batch = (rng.random((5, 4, 12)).astype(np.float32),
             rng.random((5, 4)).astype(np.float32),
             rng.standard_normal((5, 4, 3)).astype(np.float32))
    backend.set_precision("float32")
    loss32, w32 = _one_step(TINY, batch)
    backend.set_precision("tf32")
    loss_tf32, w_tf32 = _one_step(TINY.replace(precision="tf32"), batch)
    assert np.isfinite(loss32) and loss_tf32 == loss32
    assert all(np.array_equal(a, b) for a, b in zip(w32, w_tf32))


def _devices():
    if backend.NAME == "jax":
        import jax
        return [types.SimpleNamespace(platform=d.platform) for d in jax.devices()]
    import tensorflow as tf
    return [types.SimpleNamespace(platform=d.device_type.lower())
            for d in tf.config.list_logical_devices()]
