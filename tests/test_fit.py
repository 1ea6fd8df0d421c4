"""DGG training the Keras way: train_step against the original's step, the callbacks
(StepLR off-by-one, user callbacks, TensorBoard), tf.distribute on virtual CPUs,
Keras-native saving, and the device-side batches against the NumPy weights."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import reference as ref
import tensorflow as tf

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.graph import similarity_weights, similarity_weights_ops
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.objective import TERMS, forward_terms
from dgg_tf.numerics.optimizers import TorchAdam
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.dgg import BatchFeed, compile_dgg, dgg_dataset, train_dgg

TINY = DGGConfig(input_dim=12, encoder_dims=(9, 8, 16), latent_dim=3, n_clusters=4,
                 batch_size=20, num_neighbors=3, epochs=2)
HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_data(seed=0, n=100):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12)).astype(np.float32)
    table = np.stack([np.arange(n)] + [rng.permutation(n) for _ in range(3)], 1).astype(np.int32)
    return x, table, rng.integers(0, 3, n)


def test_train_step_equals_the_old_step():
    """Same weights, batch and noise: the compiled Keras step gives the loss and the
    parameters of the old hand-written step (forward_terms, PyTorch Adam) exactly."""
    rng = np.random.default_rng(3)
    params = ref.random_params(TINY, rng)
    old_net = DGGNetwork(TINY)
    set_params(old_net, params)
    opt = TorchAdam(TINY.learning_rate, l2=TINY.weight_decay)
    opt.build(old_net.trainable_variables)

    @tf.function
    def old_step(x, w, eps):
        with tf.GradientTape() as tape:
            terms, loss, _ = forward_terms(old_net, x, w, eps, TINY)
        variables = old_net.trainable_variables
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return terms, loss

    net = compile_dgg(DGGNetwork(TINY))
    set_params(net, params)
    step = tf.function(net.train_step)
    for _ in range(3):
        x = rng.random((20, 4, 12)).astype(np.float32)
        w = rng.random((20, 4)).astype(np.float32)
        eps = rng.standard_normal((20, 4, 3)).astype(np.float32)
        terms, loss = old_step(x, w, eps)
        logs = step((x, w, eps))
        assert float(logs["loss"]) == float(loss)
        for k in TERMS:
            assert float(logs[k]) == pytest.approx(float(terms[k]) / 20, rel=1e-15)
        assert logs["pred"].shape == (20,)
    new, old = get_params(net), get_params(old_net)
    for k in old:
        np.testing.assert_array_equal(new[k], old[k], err_msg=k)


@pytest.mark.backends
@pytest.mark.parametrize("kind,mode", [("no_inform", "code"), ("gauss", "code"),
                                       ("student_t", "honoured"), ("kl", "honoured")])
def test_device_weights_match_numpy(kind, mode):
    rng = np.random.default_rng(4)
    x = rng.random((15, 5, 7)).astype(np.float32)
    want = similarity_weights(x, 3.0, kind, mode)
    got = similarity_weights_ops(keras.ops.convert_to_tensor(x), 3.0, kind, mode,
                                 keras.ops.convert_to_tensor(x[11]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=2e-6, atol=1e-7)


def _assembled(feed, batch):
    return [keras.ops.convert_to_numpy(a) for a in
            feed.assemble({k: keras.ops.convert_to_tensor(v) for k, v in batch.items()})]


@pytest.mark.backends
def test_dataset_batches_are_seeded_and_cover_the_epoch():
    """The host sends indices; the feed gathers the neighbours, weighs them and draws
    the noise: a function of (seed, epoch, step), so a resumed epoch gets the same."""
    x, table, y = tiny_data()
    cfg = TINY.replace(similarity="gauss")
    data = dgg_dataset(table, y, cfg, 0, 2)
    batches = [data[i] for i in range(len(data))]
    assert len(batches) == 10 and set(batches[0]) == {"index", "epoch", "step", "row",
                                                     "labels", "sigma_index"}
    first = np.concatenate([b["index"] for b in batches[:5]])
    assert sorted(first.tolist()) == list(range(100))          # every sample once per epoch
    assert (batches[0]["sigma_index"] == batches[0]["index"][11]).all()
    np.testing.assert_array_equal(batches[0]["labels"], y[batches[0]["index"]])
    assert batches[7]["epoch"].tolist() == [1] * 20 and batches[7]["step"].tolist() == [2] * 20
    feed = BatchFeed(x, table, cfg)
    x_nbrs, w, eps = _assembled(feed, batches[0])
    want = x[table[batches[0]["index"]]]
    np.testing.assert_array_equal(x_nbrs, want)
    np.testing.assert_allclose(w, similarity_weights(want, cfg.sigma, "gauss", "code"),
                               rtol=2e-6, atol=1e-7)
    assert eps.shape == (20, 4, 3) and abs(eps.mean()) < 0.3 and 0.7 < eps.std() < 1.3
    again = dgg_dataset(table, y, cfg, 1, 2)                   # a resumed epoch 2
    for a, i in zip(batches[5:], range(len(again))):
        b = again[i]
        np.testing.assert_array_equal(a["index"], b["index"])
        np.testing.assert_array_equal(_assembled(feed, a)[2], _assembled(feed, b)[2])
    assert not np.array_equal(eps, _assembled(feed, batches[5])[2])


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.lrs, self.ends = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.lrs.append(float(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(epoch)


def test_schedule_off_by_one_and_user_callbacks():
    """StepLR(step=2) stepped at epoch start (Q8, code): epochs 1..4 run at lr, lr*g, lr*g,
    lr*g^2; the nominal schedule at lr, lr, lr*g, lr*g. A user's callback sees every epoch."""
    x, table, y = tiny_data()
    for mode, factors in (("code", [1, 0.5, 0.5, 0.25]), ("nominal", [1, 1, 0.5, 0.5])):
        cfg = TINY.replace(epochs=4, lr_step=2, lr_gamma=0.5, lr_schedule=mode)
        net = compile_dgg(DGGNetwork(cfg))
        rec = Recorder()
        history = train_dgg(net, x, table, y, callbacks=[rec], verbose=0)
        want = [0.002 * f for f in factors]
        assert rec.lrs == pytest.approx(want) and [r["lr"] for r in history] == pytest.approx(want)
        assert rec.ends == [0, 1, 2, 3]
        # the fit plans every step of the run (TensorFlow: too few for the fused update)
        assert net.optimizer.planned_steps == 4 * -(-len(x) // cfg.batch_size)


def test_tensorboard_logs_every_term(tmp_path):
    from dgg_tf.api.observers import RecordBoard
    x, table, y = tiny_data()
    net = compile_dgg(DGGNetwork(TINY))
    history, board = [], RecordBoard(str(tmp_path))
    board.history = history                 # what on_stages_end gives it in a run
    train_dgg(net, x, table, y, history=history, verbose=0, callbacks=[board])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "train"))
    acc.Reload()
    tags = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    for name in ("loss", "reconstruction", "gmm", "prior", "lr", "full_acc", "full_nmi"):
        assert f"epoch_{name}" in tags, (name, tags)


@pytest.mark.backends
def test_keras_saving_round_trip(tmp_path):
    x, table, y = tiny_data()
    net = compile_dgg(DGGNetwork(TINY))
    train_dgg(net, x, table, y, verbose=0, epochs=1)
    path = str(tmp_path / "model.keras")
    net.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.config == TINY
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))
    opt = loaded.optimizer
    assert isinstance(opt, TorchAdam) and opt.l2 == TINY.weight_decay
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)
    assert TorchAdam.from_config(opt.get_config()).get_config() == opt.get_config()


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_distributed_on_two_virtual_cpus_equals_one_device(backend):
    """tf.distribute.MirroredStrategy (TensorFlow) or keras.distribution.DataParallel
    (JAX) over 2 host devices: the same epoch's history and weights, and the same
    classifier pretraining, as one device, to 1e-5 (run in a fresh process: the CPU
    split must come before the backend starts its devices)."""
    if backend == "jax":
        pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": backend}
    out = subprocess.run([sys.executable, os.path.join(HERE, "mirrored_check.py")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"backend {backend} replicas 2" in out.stdout


def test_several_steps_per_execution_give_the_same_run():
    """--steps-per-execution only changes how often Python sees the device: same history
    and weights as one step per call; the non-finite stop still names the batch."""
    x, table, y = tiny_data()
    runs = []
    for spe in (1, 5):
        keras.utils.set_random_seed(0)
        net = compile_dgg(DGGNetwork(TINY), TINY, steps_per_execution=spe)
        history = train_dgg(net, x, table, y, verbose=0)
        runs.append(([{k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb")}
                      for r in history], get_params(net)))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][k], v)
    from dgg_tf.train.callbacks import TrainingError
    net = compile_dgg(DGGNetwork(TINY), TINY, steps_per_execution=5)
    net.gmm.std.assign(np.zeros_like(net.gmm.std.numpy()))          # log(0) in the GMM term
    with pytest.raises(TrainingError, match="epoch 1, batch 1/5"):
        train_dgg(net, x, table, y, verbose=0)
    # Keras would run a 3-step call across the end of a 5-step epoch: refused up front
    net = compile_dgg(DGGNetwork(TINY), TINY, steps_per_execution=3)
    with pytest.raises(ValueError, match="must divide the 5 steps of an epoch"):
        train_dgg(net, x, table, y, verbose=0)
