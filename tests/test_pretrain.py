"""Autoencoder pretraining on scikit-learn's 8x8 digits (section 9 and DEC schedules): through
fit, losses going down, exact resume from every kind of epoch boundary, the file writer."""
import copy
import os

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from dgg_tf.core.config import DGGConfig
from dgg_tf.core.weight_files import load_weights_h5
from dgg_tf.numerics.models import Autoencoder, encode_mean
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.pretrain import (bernoulli_nll_sum, check_pretrain_files, pretrain_autoencoder,
                                    pretrain_to_file)
from dgg_tf.train.callbacks import EpochEnd, TrainingError
from dgg_tf.train.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint

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


def without_seconds(history):
    """A history with the timings left out (they differ between runs)."""
    return {stage: [{k: v for k, v in h.items() if k != "seconds"} for h in rows]
            for stage, rows in history.items()}


def assert_same_params(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def section9_run(digits):
    """One uninterrupted section9 run, with the state after every epoch and stage."""
    states = {}

    def on_epoch(state, ae, label, epoch):
        states[(label, epoch)] = copy.deepcopy(state)

    params, state = pretrain_autoencoder(digits, TINY, seed=0, on_epoch=on_epoch, verbose=0)
    return params, state, states


def test_section9_lowers_reconstruction_loss_and_resumes(digits, section9_run):
    params, state, states = section9_run
    stages = LAYERWISE + ["finetune"]
    assert list(states) == [(s, e) for s in stages for e in (1, 2, None)]
    assert state["stage"] == 5 and list(state["history"]) == stages
    # every greedy stage and the fine-tuning lower their own loss
    for s in stages:
        losses = [h["loss"] for h in state["history"][s]]
        assert len(losses) == 2 and losses[1] < losses[0], (s, losses)
    assert [h["lr"] for h in state["history"]["layer1"]] == [1e-2, 1e-2]
    # the whole autoencoder reconstructs better than at initialisation
    before, after = bce(initial_params(TINY), TINY, digits), bce(params, TINY, digits)
    assert after < 0.85 * before, (before, after)
    assert np.all(np.isfinite(encode_mean(Autoencoder(TINY), digits)))

    # resume from the state after stage 2: only layer3, layer4 and finetune run
    saved = states[("layer2", None)]
    assert saved["stage"] == 2 and saved["epoch"] == 0
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
    assert state2["history"]["layer1"] == saved["history"]["layer1"]  # kept, not rerun
    assert without_seconds(state2["history"]) == without_seconds(state["history"])
    assert_same_params(params2, params)               # exactly the uninterrupted run


@pytest.mark.parametrize("at", [("layer3", 1), ("finetune", 1)])
def test_section9_resumes_exactly_mid_stage_from_a_file(digits, section9_run, tmp_path, at):
    """A checkpoint file written after epoch 1 of a greedy stage (its two layers and the
    SGD momentum) or of the fine-tuning (Adam moments and step): resuming from it ends
    with the same weights and history as the uninterrupted run."""
    params, state, states = section9_run
    path = tmp_path / "ck.npz"
    save_checkpoint(path, "autoencoder", states[at], {"seed": 0})
    loaded, prov = load_checkpoint(path, "autoencoder")
    assert loaded["stage"] == (LAYERWISE + ["finetune"]).index(at[0])
    assert loaded["epoch"] == 1 and loaded["optimizer"] and prov["seed"] == 0
    seen = []
    params2, state2 = pretrain_autoencoder(digits, TINY, seed=0, state=loaded, verbose=0,
                                           on_epoch=lambda s, a, label, e: seen.append((label, e)))
    assert seen[:2] == [(at[0], 2), (at[0], None)]
    assert without_seconds(state2["history"]) == without_seconds(state["history"])
    assert_same_params(params2, params)


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


def test_end_to_end_stage_resumes_exactly_after_last_finished_epoch(digits):
    config = TINY.replace(pretrain_schedule="dec", dec_epochs=3)
    straight, full = pretrain_autoencoder(digits, config, seed=1, verbose=0)
    saved = {}

    def stop_after_two(state, ae, label, epoch):
        if epoch == 2:
            saved.update(copy.deepcopy(state))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_autoencoder(digits, config, seed=1, on_epoch=stop_after_two, verbose=0)
    epochs = []
    params, state = pretrain_autoencoder(digits, config, seed=1, state=saved, verbose=0,
                                         on_epoch=lambda s, a, label, e: epochs.append(e))
    assert epochs == [3, None]                        # only the missing epoch ran
    assert [h["epoch"] for h in state["history"]["end_to_end"]] == [1, 2, 3]
    assert state["history"]["end_to_end"][:2] == saved["history"]["end_to_end"]
    assert [h["loss"] for h in state["history"]["end_to_end"]] == \
        [h["loss"] for h in full["history"]["end_to_end"]]
    assert_same_params(params, straight)


def test_older_checkpoint_without_epoch_restarts_greedy_stage(digits, section9_run):
    """A state from before exact resume (no epoch, no optimizer) still resumes: an
    unfinished greedy stage restarts from its seeded init, so (its optimizer having
    started from zero anyway) the result is the uninterrupted run's."""
    params, _, states = section9_run
    old = {k: v for k, v in states[("layer4", 1)].items() if k not in ("epoch", "optimizer")}
    params2, state2 = pretrain_autoencoder(digits, TINY, seed=0, state=old, verbose=0)
    assert [h["epoch"] for h in state2["history"]["layer4"]] == [1, 2]
    assert_same_params(params2, params)


class EpochRecorder(keras.callbacks.Callback):
    """A user's Keras callback: records every epoch end fit reports."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append((epoch, sorted(logs), self.model.optimizer.__class__.__name__))


def test_training_goes_through_fit_with_user_callbacks(digits):
    recorder = EpochRecorder()
    pretrain_autoencoder(digits, TINY, seed=0, verbose=0, callbacks=[recorder])
    # 4 greedy stages (SGD) and the fine-tuning (Adam), 2 epochs each, through fit
    assert [(e, opt) for e, _, opt in recorder.ends] == [(0, "TorchSGD"), (1, "TorchSGD")] * 4 \
        + [(0, "TorchAdam"), (1, "TorchAdam")]
    assert all("loss" in keys and "learning_rate" in keys for _, keys, _ in recorder.ends)


def test_nonfinite_loss_stops_with_stage_and_batch(digits):
    bad = TINY.replace(pretrain_schedule="dec", dec_lr=1e30)
    with pytest.raises(TrainingError, match=r"pretraining end_to_end: loss is not finite at "
                                            r"epoch 1, batch \d+/6"):
        pretrain_autoencoder(digits, bad, seed=0, verbose=0)


# ---- pretrain_to_file ----------------------------------------------------------------
def test_pretrain_to_file_writes_checkpoints_and_resumes_exactly(digits, tmp_path):
    config = TINY.replace(pretrain_schedule="dec", dec_epochs=3)
    labels = load_digits().target[:300]
    out = tmp_path / "sub" / "ae.h5"
    params, metrics = pretrain_to_file(config, digits, out, labels=labels, seed=2, verbose=0,
                                       provenance={"command": "test"})
    got, prov = load_weights_h5(out)
    assert_same_params(got, params)
    assert prov["command"] == "test" and prov["seed"] == 2 and prov["schedule"] == "dec"
    assert prov["epochs"] == {"end_to_end": 3} and 0 <= prov["metrics"]["kmeans_acc"] <= 1
    assert metrics == prov["metrics"]
    ckpt = checkpoint_path(out)
    state, _ = load_checkpoint(ckpt, "autoencoder")
    assert state["stage"] == 1 and state["epoch"] == 0
    with pytest.raises(ValueError, match="exists; remove it or pass --resume"):
        pretrain_to_file(config, digits, out, verbose=0)

    # a run killed after epoch 2 (its checkpoint), then --resume: the same file
    out2 = tmp_path / "ae2.h5"

    def stop_after_two(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        pretrain_to_file(config, digits, out2, seed=2, verbose=0, callbacks=[EpochEnd(stop_after_two)])
    assert not os.path.exists(out2) and load_checkpoint(checkpoint_path(out2), "autoencoder")[0]["epoch"] == 2
    with pytest.raises(ValueError, match="seed=2, this run has 3"):
        pretrain_to_file(config, digits, out2, seed=3, resume=True, verbose=0)
    resumed, _ = pretrain_to_file(config, digits, out2, seed=2, resume=True, verbose=0)
    assert_same_params(resumed, params)


def test_check_pretrain_files(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="not a writable directory"):
        check_pretrain_files(tmp_path / "a_file" / "ae.h5")
    with pytest.raises(ValueError, match="is a directory"):
        check_pretrain_files(tmp_path, resume=True)
    with pytest.raises(ValueError, match="does not exist"):
        check_pretrain_files(tmp_path / "ae.h5", init=tmp_path / "missing.h5")
    assert check_pretrain_files(tmp_path / "new" / "ae.h5") is None
