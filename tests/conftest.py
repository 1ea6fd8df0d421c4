import os
import shutil
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# JAX's persistent compilation cache, one folder per pytest process (per xdist worker:
# the cache writes its files in place, so two processes sharing one could read a half-
# written entry, which JAX reports with a warning), inherited by the subprocesses the
# tests start (not by the workers: they inherit the controller's environment, so a
# folder that a parent pytest chose, DGG_TEST_JAX_CACHE, is replaced): the suite compiles the
# same tiny programs again and again (a fresh process per resumed run, a network per
# cell), and on a CPU JAX's tests spend most of their time compiling. A cached program is
# the executable XLA compiled, so results are the same. Measured on test_sweep_programs
# and test_reproduce's JAX tests (Intel Xeon, 2 cores): 162 s without, 80 s with the
# cache starting empty. Set before any test module imports JAX (it reads these once).
_JAX_CACHE = os.path.join(tempfile.gettempdir(), f"dgg-test-jax-cache-{os.getpid()}")
if os.environ.get("JAX_COMPILATION_CACHE_DIR", _JAX_CACHE) in (
        _JAX_CACHE, os.environ.get("DGG_TEST_JAX_CACHE")):
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_JAX_CACHE, DGG_TEST_JAX_CACHE=_JAX_CACHE,
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_JAX_CACHE, ignore_errors=True)

# oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA) emulates an older CPU for oneDNN only. TensorFlow
# still decides from CPUID whether to send bfloat16 MatMuls to oneDNN, so on a CPU with
# AVX512_BF16 and the cap at AVX2 level it does, oneDNN finds no bfloat16 matmul kernel
# under the cap, dnnl::matmul::primitive_desc throws, MklMatMulOp<bfloat16> does not catch
# it and the process dies with SIGSEGV in pybind11's exception translation (TF 2.21).
# Reproducer: ONEDNN_MAX_CPU_ISA=AVX2 python -c "import tensorflow as tf;
#   tf.matmul(tf.ones((1, 64), tf.bfloat16), tf.ones((64, 64), tf.bfloat16))"
# A real AVX2-only CPU never takes that path (TF then runs bfloat16 MatMul in Eigen,
# as it does here with TF_ENABLE_ONEDNN_OPTS=0), so under such a cap the bfloat16 tests
# are skipped rather than let one segfault end the whole run.
_CAPS_WITHOUT_BF16_MATMUL = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2"}


def _bf16_matmul_would_crash():
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    onednn_on = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")
    return onednn_on and cap in _CAPS_WITHOUT_BF16_MATMUL


def _skip_tensorflow_only(items):
    """Tests of TensorFlow's own machinery (marked ``tensorflow_only``) do not apply when
    Keras runs on another backend (``KERAS_BACKEND=jax``)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow machinery; Keras runs on {backend}")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


#: Modules whose tests take the longest (20-70 s each on 2 cores): run first, so that
#: with ``-n 2`` no worker is left with one of them while the other has nothing to do.
SLOW_FIRST = ("test_real_data_parity.py", "test_sweep_stop.py", "test_stops.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.nodeid.split("::")[0].rsplit("/", 1)[-1] not in SLOW_FIRST)
    _skip_tensorflow_only(items)
    if not _bf16_matmul_would_crash():
        return
    skip = pytest.mark.skip(reason="bfloat16 MatMul segfaults in TF/oneDNN under "
                            f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']} "
                            "(an emulation artefact; see tests/conftest.py)")
    for item in items:
        if "bfloat16" in item.nodeid:
            item.add_marker(skip)


# The tiny reproduce/mnist.py runs (tests/tiny_mnist.py) that test_reproduce, test_stops
# and test_run_summary compare against: one of each per pytest process (per xdist worker),
# shared by the three modules instead of one per module.
@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny MNIST idx directory and its autoencoder file."""
    from tiny_mnist import write_tiny_mnist
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny_mnist"))


@pytest.fixture(scope="session")
def reference(tiny, tmp_path_factory):
    """An uninterrupted 2-epoch run in this process (K-means single-threaded, as in the
    modules that compare with it)."""
    from threadpoolctl import threadpool_limits
    from tiny_mnist import base_args, mnist
    out = tmp_path_factory.mktemp("runs") / "ref"
    with threadpool_limits(1):
        assert mnist.main(base_args(tiny, out, "--epochs", "2")) == 0
    return out


@pytest.fixture(scope="session")
def fresh(tiny, tmp_path_factory):
    """An uninterrupted 2-epoch run in a fresh process: what a stopped or killed and
    resumed run (also fresh processes) must equal bit for bit. One for the whole pytest
    run (a fresh process does not depend on the worker that starts it): the first xdist
    worker to need it makes it, the other waits for it (about 9 s of CPU saved)."""
    from tiny_mnist import base_args, run_fresh

    def make(folder):
        ran = run_fresh(*base_args(tiny, folder / "fresh", "--epochs", "2"))
        assert ran.returncode == 0, ran.stderr
    return once_per_run(tmp_path_factory, "fresh", make) / "fresh"


def once_per_run(tmp_path_factory, name, make):
    """``make(folder)`` once per pytest run rather than once per xdist worker: the
    workers share their base temporary folder's parent, and a file lock lets the first
    make it while the others wait. Returns the folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    try:
        import fcntl
    except ImportError:                       # no flock (Windows): one per process
        fcntl, folder = None, tmp_path_factory.mktemp(name)
    with open(root / f"{name}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if fcntl is None or not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder
