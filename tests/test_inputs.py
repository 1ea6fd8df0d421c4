"""The one gate (``core.inputs``): each check refuses what it should, with its message,
and every entrance of the library checks x exactly once (``CHECKED`` counts), so that
nothing below an entrance checks again."""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from blob_inputs import blob_inputs

from dgg_tf.core import inputs
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.files import fingerprint

SMALL = DGGConfig(input_dim=64, encoder_dims=(16, 16, 32), latent_dim=4, n_clusters=10,
                  num_neighbors=5, table_top=10, table_columns=8, batch_size=50, epochs=1,
                  classifier_epochs=1, kmeans_n_init=1, layerwise_epochs=1, finetune_epochs=1,
                  siamese_epochs=1)


# ---------------------------------------------------------------- each check
@pytest.mark.parametrize("x,kwargs,message", [
    (np.zeros(5), {}, "2-D"),
    (np.zeros((0, 3)), {}, "empty"),
    (np.array([[0.5, np.nan], [np.inf, 0.1]]), {}, "2 non-finite"),
    (np.full((2, 3), 0.5), {"input_dim": 4}, r"\[N, 4\]"),
    (np.array([[-0.25, 1.5]]), {"likelihood": "bernoulli"}, r"lies in \[-0.25, 1.5\]"),
    ([["a", "b"]], {}, "numeric"),
])
def test_check_data_refuses(x, kwargs, message):
    with pytest.raises(ValueError, match=message):
        inputs.check_data(x, **kwargs)


def test_check_data_returns_float32_and_accepts_what_it_should():
    out = inputs.check_data([[0, 1], [1, 0]], input_dim=2, likelihood="bernoulli")
    assert out.dtype == np.float32 and out.shape == (2, 2)
    inputs.check_data(np.array([[-5.0, 9.0]]), likelihood="gaussian")   # any real value


def test_batches_q7_and_steps_per_execution():
    cfg = DGGConfig(batch_size=100)
    inputs.check_batches(1012, cfg)                          # last batch of 12: allowed
    with pytest.raises(ValueError, match="last batch of 11 samples.*Q7"):
        inputs.check_batches(1011, cfg)
    inputs.check_batches(1011, cfg.replace(sigma_mode="honoured"))
    with pytest.raises(ValueError, match="steps_per_execution=3 must divide the 10 steps"):
        inputs.check_batches(1000, cfg, steps_per_execution=3)
    assert inputs.check_probe_steps([1, 10], 1000, cfg) == (1, 10)
    with pytest.raises(ValueError, match=r"probe_steps must be steps of the first epoch, 1..10"):
        inputs.check_probe_steps([11], 1000, cfg)


def test_run_inputs_are_frozen_with_their_fingerprints(tmp_path):
    x, y, tables, weights = blob_inputs(tmp_path, 300, SMALL)
    checked = inputs.check_run_inputs(SMALL, x, y, tables, weights)
    assert checked.fingerprints == {"data_fingerprint": fingerprint(checked.x),
                                    "table_fingerprint": fingerprint(checked.table)}
    assert checked.neighbors["purity"] == pytest.approx(
        np.mean(y[checked.table[:, 1:6]] == y[:, None]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        checked.x = None
    with pytest.raises(ValueError, match="labels has 299 labels for 300 samples"):
        inputs.check_run_inputs(SMALL, x, y[:-1], tables, weights)


# ---------------------------------------------------------------- once per entrance
@pytest.fixture
def counted(monkeypatch):
    counter = inputs.CHECKED.__class__()
    monkeypatch.setattr(inputs, "CHECKED", counter)
    return counter


def test_run_dgg_checks_each_input_once(tmp_path, counted):
    from dgg_tf.pipeline import run_dgg
    x, y, tables, weights = blob_inputs(tmp_path, 300, SMALL)
    run_dgg(SMALL, x, y, neighbors=tables, weights=weights, workdir=tmp_path / "run",
            audit=False, verbose=0)
    assert dict(counted) == {"run": 1, "data": 1, "tables": 1, "weights": 1}


def test_the_estimator_checks_x_once_through_every_stage(counted):
    from dgg_tf import DGG
    rng = np.random.default_rng(0)
    x = rng.random((300, 64)).astype(np.float32)
    # the one-stage DEC pretraining: the greedy schedule's 5 stages check nothing more
    DGG(n_clusters=10, epochs=1, pretrain_epochs=1, classifier_epochs=1, siamese_epochs=1,
        verbose=0, config_overrides={"encoder_dims": (16, 16, 32), "latent_dim": 4,
                                     "num_neighbors": 5, "kmeans_n_init": 1,
                                     "batch_size": 50, "pretrain_schedule": "dec"}
        ).fit(x, neighbors="siamese")
    assert counted["data"] == 1 and counted["run"] == 0 and counted["weights"] == 0


def test_the_stage_entrances_check_x_once(tmp_path, counted):
    from dgg_tf.stages.pretrain import pretrain_autoencoder, pretrain_to_file
    from dgg_tf.stages.siamese import train_siamese
    x = np.random.default_rng(0).random((120, 64)).astype(np.float32)
    one_stage = SMALL.replace(pretrain_schedule="dec", dec_epochs=1)   # as few traces as can be
    pretrain_autoencoder(x, one_stage, verbose=0)
    assert counted["data"] == 1
    pretrain_to_file(one_stage, x, tmp_path / "ae.h5", verbose=0)
    assert counted["data"] == 2
    train_siamese(x, SMALL, verbose=0)
    assert counted["data"] == 3
    with pytest.raises(ValueError, match=r"pretraining: x must have shape \[N, 64\]"):
        pretrain_autoencoder(x[:, :10], SMALL, verbose=0)


def test_a_bad_estimator_parameter_is_refused_before_tensorflow_starts():
    """The constraint table (``DGG._parameter_constraints``) refuses a bad parameter in
    ``fit`` with scikit-learn's message, before Keras or TensorFlow load."""
    code = ("import sys, numpy as np\n"
            "from dgg_tf import DGG\n"
            "try:\n"
            "    DGG(verbose=5).fit(np.zeros((30, 4)))\n"
            "except ValueError as e:\n"
            "    print(e)\n"
            "print('keras' in sys.modules, 'tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "The 'verbose' parameter of DGG must be an int in the range [0, 2]" in out.stdout
    assert out.stdout.strip().endswith("False False"), out.stdout + out.stderr
