"""The step on real data lands where the original's formula lands in float64.

From the real start (the shipped autoencoder, the GMM init and the pretrained f2 of full
MNIST), real MNIST batches from the shipped neighbour table and seeded noise, 5 steps of
``net.step`` on the Keras backend under test and of the original's formula
(``tests/parity.py``) in float64 and in float32. The float32 reference, with the rows in
the original's order and in dgg_tf's, differs from float64 by rounding alone: that is the
band. The backend's step must stay inside it after each saved step, and move no weight
the other way from float64 in step 1 more often than the float32 reference does.
Runs on the backend of the suite (CI runs it on TensorFlow and on JAX)."""
import os

import numpy as np
import pytest

import parity

pytestmark = pytest.mark.backends
pytest.importorskip("jax")

#: How far past the band a backend may land: the band is the larger distance of two
#: float32 paths; a third float32 path (kernels chosen by the CPU) may land a little
#: past it by chance, not by a factor.
SLACK = 1.5
#: The band measured on an AMD EPYC (AVX-512), jax 0.10.2: {preset: {step: distance}}.
#: Both band paths are XLA programs, so a systematic float32 error of XLA on some CPU
#: would widen the band with the JAX step it should catch: the band may not exceed 3
#: times these figures.
MEASURED_BAND = {"code": {1: 1.32e-4, 5: 3.96e-4}, "paper": {1: 1.13e-3, 5: 3.59e-3}}


REFERENCE = ("float64", "float32-column", "float32-sample")
PRESETS = ("code", "paper")


def _reference(cache_root):
    """The reference paths, kept in pytest's cache between runs (CI runs the suite on
    TensorFlow, then on JAX: the second run reuses them), keyed by what they depend on."""
    import hashlib
    import jax
    key = hashlib.sha256()
    for path in (parity.__file__, parity.START):
        with open(path, "rb") as f:
            key.update(f.read())
    key.update(f"{jax.__version__} {parity.SAVED}".encode())
    folder = cache_root / key.hexdigest()[:16]
    files = [folder / f"{p}-{r}.npz" for p in PRESETS for r in REFERENCE]
    if not all(f.exists() for f in files):
        folder.mkdir(parents=True, exist_ok=True)
        parity.run_paths(REFERENCE, PRESETS, max(parity.SAVED), str(folder))
    return {p: {r: parity.load(str(folder / f"{p}-{r}.npz")) for r in REFERENCE}
            for p in PRESETS}


def test_step_on_real_data_stays_in_the_float32_band(request, tmp_path):
    """Both presets in one test, so that one worker computes the paths."""
    if not os.path.isdir(parity.mnist_path()):
        pytest.skip(f"no MNIST at {parity.mnist_path()}")
    import keras
    backend = keras.backend.backend()
    cache = getattr(request.config, "cache", None)     # None under -p no:cacheprovider
    runs = _reference(cache.mkdir("dgg_parity") if cache else tmp_path / "reference")
    mine = parity.run_paths((backend,), PRESETS, max(parity.SAVED), str(tmp_path))
    for preset in PRESETS:
        table, band = parity.summary({**runs[preset], **mine[preset]}, lr=0.002)
        row = table[backend]
        print(f"{preset}: {backend} {row}; band {band}")
        for step in parity.SAVED:
            key = f"step {step}"
            assert 0 < band[key] < 3 * MEASURED_BAND[preset][step], (preset, key, band)
            assert row[key] <= SLACK * band[key], (preset, backend, key, row[key], band[key])
        most = max(table[p]["wrong-way"][0] for p in table if p.startswith("float32"))
        assert row["wrong-way"][0] <= most, (preset, backend, row["wrong-way"], most)


def test_reference_is_the_formula():
    """The reference's loss is the NumPy float64 formula of tests/reference.py (loops
    over samples and columns), on a real batch and the real start, in both row orders."""
    import jax
    jax.config.update("jax_enable_x64", True)
    try:
        import jax.numpy as jnp
        import reference as ref
        from dgg_tf.config import DGGConfig
        for preset in ("code", "paper"):
            config = DGGConfig.preset(preset)
            params = parity.start(config)
            x, w, eps = (a[:12] for a in parity.batches(config, 1)[0])
            want = ref.terms(params, x, w, eps, config.classifier_input, config.prior)["loss"]
            for order in ("column", "sample"):
                loss = parity._reference_loss(jnp, jax.lax, "float64", config, order)
                p64 = {k: jnp.asarray(v, "float64") for k, v in params.items()}
                got = float(loss(p64, *(jnp.asarray(a, "float64") for a in (x, w, eps))))
                assert got == pytest.approx(want, rel=1e-12), (preset, order)
    finally:
        jax.config.update("jax_enable_x64", False)
