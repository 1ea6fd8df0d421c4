"""The one checkpoint format (dgg_tf.train.checkpoint): every stage's state goes through
the same save and load bit for bit, every stage resumes through the same function,
and the checkpoints of the formats before it are refused with a message that names
the file and what to do."""
import json
import os

import numpy as np
import pytest

from dgg_tf.core import checkpoints as ck
from dgg_tf.core.checkpoints import (FORMAT, KINDS, CheckpointFormatError, checkpoint_path,
                                     load_checkpoint, read_record, resume_checkpoint,
                                     save_checkpoint)
from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.weights import save_weights_h5

pytestmark = pytest.mark.backends    # also run with KERAS_BACKEND=jax in CI

TINY = DGGConfig(input_dim=64, encoder_dims=(16, 16, 32), latent_dim=4, siamese_epochs=2,
                 dec_epochs=2, dec_batch_size=50, pretrain_schedule="dec")
SMALL_TABLE = TINY.replace(table_top=12, table_columns=6, num_neighbors=3)


def small_state(kind):
    """A state of each stage's shape: weights, optimizer variables of several dtypes
    (Keras' step count is int64), the stage's arrays and JSON entries."""
    rng = np.random.default_rng(0)
    state = {"params": {"encoder1/W": rng.normal(size=(3, 2)).astype(np.float32),
                        "encoder1/b": np.float32([0.1, -0.2])},
             "optimizer": [np.int64(7), np.float32(1e-3),
                           rng.normal(size=(3, 2)).astype(np.float32)],
             "epoch": 2}
    if kind == "dgg":
        state.update(arrays={"kmeans_labels": np.arange(5, dtype=np.int32)},
                     history=[{"epoch": 1, "loss": 1.5}, {"epoch": 2, "loss": 1.25}],
                     init={"gmm_no_pi_acc": 0.5}, classifier_history=[], audit=None,
                     first_steps=[])
    elif kind == "autoencoder":
        state.update(stage=1, history={"layer1": [{"epoch": 1, "loss": 3.0}]})
    else:
        state.update(history=[{"epoch": 1, "loss": 0.5}])
    return state


@pytest.mark.parametrize("kind", KINDS)
def test_every_stage_round_trips_through_the_one_format(tmp_path, kind):
    path = tmp_path / "ck.npz"
    state = small_state(kind)
    save_checkpoint(path, kind, state, {"seed": 3, "data_fingerprint": "abc"})
    assert not list(tmp_path.glob("*.tmp-*"))                        # written atomically
    loaded, prov = load_checkpoint(path, kind)
    assert prov == {"seed": 3, "data_fingerprint": "abc"}
    for name, value in state["params"].items():
        np.testing.assert_array_equal(loaded["params"][name], value)
    assert [a.dtype for a in loaded["optimizer"]] == [np.int64, np.float32, np.float32]
    for got, want in zip(loaded["optimizer"], state["optimizer"]):
        np.testing.assert_array_equal(got, want)
    for name, value in (state.get("arrays") or {}).items():
        np.testing.assert_array_equal(loaded["arrays"][name], value)
        assert loaded["arrays"][name].dtype == value.dtype
    entries = {k: v for k, v in state.items() if k not in ("params", "optimizer", "arrays")}
    assert {k: loaded[k] for k in entries} == entries
    record = read_record(path, kind)
    assert record["format"] == FORMAT and record["kind"] == kind
    other = next(k for k in KINDS if k != kind)
    with pytest.raises(ValueError, match=f"checkpoint of the {kind} stage, not of the {other}"):
        load_checkpoint(path, other)


def test_every_stage_uses_the_one_save_and_resume():
    """DGG training, the pretraining and the Siamese stage resume through one helper
    (``train.resumable.ResumableStage``), which saves and resumes the one format."""
    from dgg_tf.api import pipeline
    from dgg_tf.stages import pretrain, siamese
    from dgg_tf.train import resumable
    assert resumable.save_checkpoint is ck.save_checkpoint
    assert resumable.resume_checkpoint is ck.resume_checkpoint
    for module in (pipeline, pretrain, siamese):
        assert module.ResumableStage is resumable.ResumableStage
        for name in ("save_checkpoint", "resume_checkpoint", "load_checkpoint"):
            assert not hasattr(module, name), (module.__name__, name)


def test_resume_checks_the_same_run(tmp_path, capsys):
    path = tmp_path / "ck.npz"
    assert resume_checkpoint(path, "siamese", {"seed": 1}) is None
    assert "no checkpoint" in capsys.readouterr().out
    save_checkpoint(path, "siamese", small_state("siamese"),
                    {"seed": 1, "config": {"a": 1, "epochs": 3}})
    state, prov = resume_checkpoint(path, "siamese", {"seed": 1}, verbose=0)
    assert state["epoch"] == 2 and prov["seed"] == 1
    with pytest.raises(ValueError, match="seed=1, this run has 2"):
        resume_checkpoint(path, "siamese", {"seed": 2})
    with pytest.raises(ValueError, match=r"another config: a=1 \(now 2\)"):
        resume_checkpoint(path, "siamese", {"config": {"a": 2, "epochs": 3}})


def old_run_checkpoint(path, version):
    """A DGG run's checkpoint.npz as earlier versions wrote it (format v1 or v2)."""
    meta = {"format": f"dgg_tf-run-checkpoint-v{version}", "epoch": 1, "history": [{}],
            "n_optimizer_arrays": 1, "init": {"gmm_no_pi_acc": 0.25}}
    np.savez(path, **{"param/encoder1/W": np.zeros((2, 2), np.float32), "opt/000": np.int64(3),
                      "kmeans_labels": np.zeros(4, np.int64), "meta": np.array(json.dumps(meta))})


def old_stage_checkpoint(path):
    """An autoencoder or Siamese checkpoint as earlier versions wrote it: HDF5 weights with
    the optimizer's arrays as optimizer/NNN (OUT.ckpt.h5)."""
    save_weights_h5(path, {"encoder1/W": np.zeros((2, 2), np.float32),
                           "optimizer/000": np.float32(3)},
                    {"n_optimizer_arrays": 1, "epoch": 1, "seed": 0, "history": []})


@pytest.mark.parametrize("version", [1, 2])
def test_old_run_checkpoints_are_refused(tmp_path, version):
    from dgg_tf.sweep.curves import gmm_init_acc
    path = tmp_path / "checkpoint.npz"
    old_run_checkpoint(path, version)
    with pytest.raises(CheckpointFormatError) as err:
        resume_checkpoint(path, "dgg", {}, verbose=0)
    msg = str(err.value)
    assert str(path) in msg and f"dgg_tf-run-checkpoint-v{version}" in msg
    assert "remove it to start the stage over" in msg and FORMAT in msg
    assert gmm_init_acc(tmp_path) == 0.25          # an old run's figures stay readable


def test_old_stage_checkpoints_are_refused(tmp_path):
    """An OUT.ckpt.h5 of an earlier version, where it was (the stage's former name) or passed as
    a checkpoint, stops the autoencoder and the Siamese --resume before any work."""
    from dgg_tf.stages.pretrain import pretrain_to_file
    from dgg_tf.stages.siamese import build_neighbors
    x = np.random.default_rng(0).random((60, 64)).astype(np.float32)
    ae, siam = tmp_path / "ae.h5", tmp_path / "s.h5"
    for out in (ae, siam):
        old_stage_checkpoint(str(out) + ".ckpt.h5")
    for run in (lambda: pretrain_to_file(TINY, x, ae, resume=True, verbose=0),
                lambda: build_neighbors(SMALL_TABLE, x, weights=None, out_weights=siam,
                                        out_table=tmp_path / "t.npz", resume=True, verbose=0)):
        with pytest.raises(CheckpointFormatError, match="HDF5.*remove it to start the stage"):
            run()
    assert not os.path.exists(checkpoint_path(ae)) and not os.path.exists(siam)
    with pytest.raises(CheckpointFormatError,
                       match=r"ae\.h5\.ckpt\.h5 is a checkpoint of format HDF5"):
        load_checkpoint(str(ae) + ".ckpt.h5", "autoencoder")
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.npz cannot be read"):
        load_checkpoint(tmp_path / "junk.npz", "siamese")
