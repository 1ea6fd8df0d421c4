"""A tiny autoencoder pretraining run on scikit-learn's 8x8 digits (section 9 and DEC schedules)."""
import copy

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dgg_tf.config import DGGConfig
from dgg_tf.models import Autoencoder, encode_mean
from dgg_tf.pretrain import bernoulli_nll_sum, pretrain_autoencoder
from dgg_tf.weights import get_params, set_params

# 2 epochs of 6 batches: the learning rates are 10x section 9's so the effect shows
TINY = DGGConfig(input_dim=64, encoder_dims=(16, 16, 32), latent_dim=4,
                 layerwise_epochs=2, layerwise_batch_size=50, layerwise_lr=1e-2,
                 finetune_epochs=2, finetune_batch_size=50, finetune_lr=1e-2,
                 dec_epochs=2, dec_batch_size=50)
LAYERWISE = ["layer1", "layer2", "layer3", "layer4"]


@pytest.fixture(scope="module")
def digits():
    x = load_digits().data[:300].astype(np.float32) / 16.0  # pixels 0..16 -> [0, 1]
    assert x.shape == (300, 64) and x.min() == 0.0 and x.max() == 1.0
    return x


def bce(params, config, x):
    """Mean over samples of the summed Bernoulli NLL of the autoencoder's reconstruction."""
    ae = Autoencoder(config)
    set_params(ae, params)
    return float(bernoulli_nll_sum(x, np.asarray(ae(x)))) / len(x)


def initial_params(config, seed=0):
    import keras
    keras.utils.set_random_seed(seed)
    return get_params(Autoencoder(config))


def test_section9_lowers_reconstruction_loss_and_resumes(digits):
    seen = []
    saved = {}

    def on_epoch(state, ae, label, epoch):
        seen.append((label, epoch))
        if label == "layer2" and epoch is None:  # end of stage 2: what a checkpoint holds
            saved.update(copy.deepcopy(state))

    params, state = pretrain_autoencoder(digits, TINY, seed=0, on_epoch=on_epoch, verbose=0)
    stages = LAYERWISE + ["finetune"]
    assert seen == [(s, e) for s in stages for e in (1, 2, None)]
    assert state["stage"] == 5 and list(state["history"]) == stages
    # every greedy stage and the fine-tuning lower their own loss
    for s in stages:
        losses = [h["loss"] for h in state["history"][s]]
        assert len(losses) == 2 and losses[1] < losses[0], (s, losses)
    # the whole autoencoder reconstructs better than at initialisation
    before, after = bce(initial_params(TINY), TINY, digits), bce(params, TINY, digits)
    assert after < 0.85 * before, (before, after)
    assert np.all(np.isfinite(encode_mean(Autoencoder(TINY), digits)))

    # resume from the state after stage 2: only layer3, layer4 and finetune run
    assert saved["stage"] == 2
    resumed_seen, checked = [], []

    def on_resumed_epoch(state, ae, label, epoch):
        resumed_seen.append((label, epoch))
        if label == "layer3" and epoch is None:  # stages 1-2 were taken from the state
            now = get_params(ae)
            for name in ("encoder1/W", "encoder2/b", "decoder4/W", "decoder3/b"):
                np.testing.assert_array_equal(now[name], saved["params"][name])
            checked.append(True)

    params2, state2 = pretrain_autoencoder(digits, TINY, seed=0, state=copy.deepcopy(saved),
                                           on_epoch=on_resumed_epoch, verbose=0)
    assert resumed_seen == [(s, e) for s in ("layer3", "layer4", "finetune") for e in (1, 2, None)]
    assert checked == [True]
    assert state2["stage"] == 5
    assert state2["history"]["layer1"] == saved["history"]["layer1"]  # kept, not rerun
    assert bce(params2, TINY, digits) < 0.9 * before


def test_dec_schedule_lowers_reconstruction_loss(digits):
    config = TINY.replace(pretrain_schedule="dec")
    params, state = pretrain_autoencoder(digits, config, seed=1, verbose=0)
    assert list(state["history"]) == ["end_to_end"] and state["stage"] == 1
    losses = [h["loss"] for h in state["history"]["end_to_end"]]
    assert len(losses) == 2 and losses[1] < losses[0], losses
    assert bce(params, config, digits) < bce(initial_params(config, 1), config, digits)


def test_rejects_bad_input(digits):
    with pytest.raises(ValueError, match=r"shape \[N, 64\]"):
        pretrain_autoencoder(digits[:, :10], TINY, verbose=0)
    bad = digits.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        pretrain_autoencoder(bad, TINY, verbose=0)


def test_end_to_end_stage_resumes_after_last_finished_epoch(digits):
    config = TINY.replace(pretrain_schedule="dec", dec_epochs=3)
    saved = {}

    def stop_after_two(state, ae, label, epoch):
        if epoch == 2:
            saved.update(copy.deepcopy(state), params=get_params(ae))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_autoencoder(digits, config, seed=1, on_epoch=stop_after_two, verbose=0)
    epochs = []
    params, state = pretrain_autoencoder(digits, config, seed=1, state=saved, verbose=0,
                                         on_epoch=lambda s, a, label, e: epochs.append(e))
    assert epochs == [3, None]                        # only the missing epoch ran
    assert [h["epoch"] for h in state["history"]["end_to_end"]] == [1, 2, 3]
    assert state["history"]["end_to_end"][:2] == saved["history"]["end_to_end"]
    assert not np.array_equal(params["encoder1/W"], saved["params"]["encoder1/W"])
