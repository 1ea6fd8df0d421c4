"""DGG's un-warmed first steps on real data stay finite on every backend.

From the shipped autoencoder, Adam's first step (every weight moved by about the
learning rate) saturates some decoder outputs at exactly 1.0 in float32. The original
then computes log(1 - 1.0 + 1e-10) = log(1e-10) and goes on; docs/quirks.md names no
place where its loss would turn non-finite here (its only epsilon-free log is the code
prior's log(pc), which needs a cluster's gamma to be exactly 0 for a sample and all its
neighbours). A compiler that folds the epsilon away gets -inf instead, and the run
stops at its second step: that is what this catches, in small form of
``reproduce/sweep.py --protocol full --configs code,paper --subset 1000
--subset-neighbors raw --epochs 1`` (first 300 images, exact kNN on the pixels)."""
import os

import numpy as np
import parity
import pytest

from dgg_tf.api.pipeline import run_dgg
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.data import load_mnist
from dgg_tf.stages.neighbors import rebuild_raw

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("preset", ["code", "paper"])
def test_unwarmed_first_steps_stay_finite_on_real_data(preset, tmp_path):
    if not os.path.isdir(parity.mnist_path()):
        pytest.skip(f"no MNIST at {parity.mnist_path()}")
    x, y = load_mnist(parity.mnist_path())
    x, y = x[:300], y[:300]
    config = DGGConfig.preset(preset, epochs=1, classifier_epochs=2, kmeans_n_init=2)
    tables, _ = rebuild_raw(x, config)
    result = run_dgg(config, x, y, neighbors=tables, weights=parity.AUTOENCODER,
                     workdir=tmp_path / "run", verbose=0, audit=False)
    record = result["history"][-1]
    for key in ("loss", "reconstruction", "gmm", "cluster_entropy", "prior"):
        assert np.isfinite(record[key]), (preset, key, record[key])
