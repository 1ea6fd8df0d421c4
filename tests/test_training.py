"""GMM init, classifier pretraining, the training loop, checkpoint state and bad input."""
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics.knn import knn
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params, set_params
from dgg_tf.stages.dgg import TrainingError, compile_dgg, encode, train_dgg
from dgg_tf.stages.initialise import (classifier_loss, gmm_posterior, init_gmm, kmeans_init,
                                      pretrain_classifier)
from dgg_tf.stages.pretrain import pretrain_autoencoder
from dgg_tf.train.checkpoint import restore_network

SMALL = DGGConfig(input_dim=64, encoder_dims=(64, 64, 128), latent_dim=10, n_clusters=10,
                  epochs=3, classifier_epochs=20, kmeans_n_init=3, layerwise_epochs=5,
                  finetune_epochs=15, layerwise_batch_size=50, finetune_batch_size=50)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x, y = (d.data[:1700] / 16.0).astype(np.float32), d.target[:1700]
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    table = np.argsort(d2, axis=1, kind="stable")[:, :41].astype(np.int32)
    return x, y, table


@pytest.fixture(scope="module")
def pretrained(digits):
    x, _, _ = digits
    params, _ = pretrain_autoencoder(x, SMALL, seed=0, verbose=0)
    return params


def test_kmeans_init_variances_by_hand():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.3, (30, 2)) for c in ([0, 0], [5, 5], [0, 5])]).astype(np.float32)
    cfg = DGGConfig(latent_dim=2, n_clusters=3, kmeans_n_init=2)
    init = kmeans_init(x, cfg)
    for k in range(3):
        members = x[init["labels"] == k].astype(np.float64)
        np.testing.assert_allclose(init["mean"][:, k], members.mean(0), rtol=1e-5)
        np.testing.assert_allclose(init["std"][:, k] ** 2, members.var(0, ddof=1), rtol=1e-4)
    assert init["counts"].sum() == 90


def test_gmm_posterior_probability_space_quirk():
    rng = np.random.default_rng(1)
    x, m = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    s = rng.uniform(0.5, 2, (3, 4)).astype(np.float32)
    p = np.prod(np.exp(-(x[:, :, None] - m) ** 2 / (2 * s ** 2)) / np.sqrt(2 * np.pi * s ** 2), axis=1)
    np.testing.assert_allclose(gmm_posterior(x, m, s), p / (p.sum(1, keepdims=True) + 1e-10), rtol=1e-4)
    pi = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(gmm_posterior(x, m, s, pi), p * pi / ((p * pi).sum(1, keepdims=True) + 1e-10),
                               rtol=1e-4)
    # a point far from every component underflows to all zeros in float32, as in the original
    far = gmm_posterior(np.full((1, 3), 1e3, np.float32), m, s)
    assert np.all(far == 0)


def fit(net, x, table, y=None, cfg=None, **kwargs):
    """compile_dgg + train_dgg: DGG training through fit."""
    compile_dgg(net, cfg or net.config)
    return train_dgg(net, x, table, y, verbose=0, **kwargs)


def test_classifier_losses_by_hand():
    logits = np.array([[1.2, 0.3, -0.5], [0.1, -1.0, 2.0]], np.float32)
    t = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    double = np.mean([-(p[i, t[i]] - np.log(np.exp(p[i]).sum())) for i in range(2)])
    plain = np.mean([-np.log(p[i, t[i]]) for i in range(2)])
    assert float(classifier_loss(tf.constant(logits), tf.constant(t), "double_softmax")) == pytest.approx(double, rel=1e-5)
    assert float(classifier_loss(tf.constant(logits), tf.constant(t), "cross_entropy")) == pytest.approx(plain, rel=1e-5)
    # saturated: softmax gives exactly 0 for the target; -log softmax stays finite (= 400)
    sat = tf.constant([[-200.0, 200.0, 0.0]])
    assert float(classifier_loss(sat, tf.constant([0]), "cross_entropy")) == pytest.approx(400.0)


def test_end_to_end_tiny_run(digits, pretrained):
    x, y, table = digits
    net = DGGNetwork(SMALL)
    set_params(net, pretrained, partial=True)
    report = init_gmm(net, x, y, SMALL, verbose=0)
    assert report["kmeans_acc"] > 0.5     # the tiny autoencoder is informative
    hist = pretrain_classifier(net, encode(net, x), report["kmeans_labels"], SMALL, y, verbose=0)
    assert len(hist) == 20
    assert hist[-1]["agreement_with_kmeans"] > 0.3   # chance is 0.1; double softmax learns slowly
    history = fit(net, x, table, y)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["lr"] for r in history] == [0.002] * 3
    rows = len(x) * (SMALL.num_neighbors + 1)
    for r in history:
        assert np.isfinite([r[k] for k in ("loss", "reconstruction", "gmm", "prior", "recon_bce")]).all()
        assert 0 < r["gmm_variance"]
        assert r["gmm_std_mean"] ** 2 <= r["gmm_variance"]          # Jensen
        assert rows / 10 <= r["gamma_sq_sum"] <= rows                 # 1/K <= sum_k gamma^2 <= 1 per row
    # The objective falls every epoch and the clustering stays informative. Whether 3
    # epochs beat the pretrained classifier depends on the trajectory: the double-softmax
    # classifier (Q5) is weak on 1700 digits, and in trials over seeds (and over
    # last-bit differences in pretraining) ACC went either way (0.29-0.55 from 0.37-0.55),
    # using 3-6 clusters. Non-collapse from a good start is the next test.
    losses = [r["loss"] for r in history]
    assert losses[0] > losses[1] > losses[2]
    assert history[-1]["full_acc"] > 0.2 and history[-1]["full_nmi"] > 0.1   # chance: 0.1 / 0


def test_dgg_keeps_a_good_clustering_of_separated_blobs():
    """From a classifier that matches K-means, three DGG epochs keep all ten clusters
    and the accuracy (seen at 1.0 for seeds 1 and 2). With the autoencoder of seed 0 the
    pretrained f2 saturates (exact zeros in 7-9 % of its outputs), so a neighbourhood
    can lack a cluster entirely and the code prior's log(0) stops training at batch 1,
    as it would stop the original (Q9): a property of that start, not of the step."""
    rng = np.random.default_rng(0)
    centers = (rng.random((10, 64)) < 0.3).astype(np.float32)
    y = np.repeat(np.arange(10), 100)
    x = np.clip(0.8 * centers[y] + 0.1 + rng.normal(0, 0.1, (1000, 64)), 0, 1).astype(np.float32)
    cfg = SMALL.replace(classifier_pretrain_loss="cross_entropy", seed=1)
    params, _ = pretrain_autoencoder(x, cfg, seed=1, verbose=0)
    net = DGGNetwork(cfg)
    set_params(net, params, partial=True)
    report = init_gmm(net, x, y, cfg, verbose=0)
    hist = pretrain_classifier(net, encode(net, x), report["kmeans_labels"], cfg, y, seed=1,
                               verbose=0)
    assert report["kmeans_acc"] > 0.95 and hist[-1]["acc"] > 0.95
    history = fit(net, x, knn(x, 40), y, cfg)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["full_acc"] > 0.95
    assert len(set(np.argmax(net.classify(encode(net, x)), 1).tolist())) == 10


def test_resume_continues_bit_for_bit(digits, pretrained):
    x, y, table = digits
    cfg = SMALL.replace(epochs=2)

    def fresh():
        net = DGGNetwork(cfg)
        set_params(net, pretrained, partial=True)
        net.gmm.mean.assign(np.zeros((10, 10), np.float32) + np.eye(10, dtype=np.float32))
        net.gmm.std.assign(np.ones((10, 10), np.float32))
        net.classifier.kernel.assign(np.eye(10, dtype=np.float32))
        net.classifier.bias.assign(np.zeros(10, np.float32))
        net.encoder.logvar_head.kernel.assign(np.full((128, 10), 0.01, np.float32))
        net.encoder.logvar_head.bias.assign(np.zeros(10, np.float32))
        return net

    n = 1200
    straight = fresh()
    straight_history = fit(straight, x[:n], table[:n] % n, y[:n], cfg)
    first = fresh()
    first_history = fit(first, x[:n], table[:n] % n, y[:n], cfg, epochs=1)
    saved = get_params(first), [np.asarray(v) for v in first.optimizer.variables]
    resumed = fresh()
    compile_dgg(resumed, cfg)
    restore_network(resumed, *saved)
    resumed_history = train_dgg(resumed, x[:n], table[:n] % n, y[:n], verbose=0,
                                history=list(first_history), initial_epoch=1)
    assert len(resumed_history) == 2

    def timeless(h):
        return [{k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb")} for r in h]
    assert timeless(resumed_history) == timeless(straight_history)
    for k, v in get_params(straight).items():
        np.testing.assert_array_equal(get_params(resumed)[k], v)


def test_nan_loss_stops_with_epoch_and_batch(digits):
    x, y, table = digits
    net = DGGNetwork(SMALL)
    net.gmm.std.assign(np.zeros((10, 10), np.float32))   # variance 0: log(0) in the GMM term
    with pytest.raises(TrainingError, match="epoch 1, batch 1/2"):
        fit(net, x[:200], table[:200] % 200)


def test_bad_training_input(digits):
    x, y, table = digits
    net = compile_dgg(DGGNetwork(SMALL))

    def epoch(x, table, y=None):
        train_dgg(net, x, table, y, verbose=0)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 300\)"):
        epoch(x[:300], table[:300])          # indices up to 1699
    bad = x[:300].copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        epoch(bad, table[:300] % 300)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 64\]"):
        epoch(x[:300, :10], table[:300] % 300)
    with pytest.raises(ValueError, match="for training has 5 columns; num_neighbors=20 needs 21"):
        epoch(x[:300], table[:300, :5] % 300)
    with pytest.raises(ValueError, match="last batch of 5 samples"):
        epoch(x[:305], table[:305] % 305)
    with pytest.raises(ValueError, match="labels has"):
        epoch(x[:300], table[:300] % 300, y[:10])


def test_mixed_bfloat16_epoch_keeps_float32_state_and_tracks_float32(digits, pretrained):
    """The speed setting runs the dense layers in bfloat16 but keeps the weights, the
    GMM, the optimiser state and the loss terms in float32, and its loss stays within
    bfloat16 rounding of the float32 run's on the same weights, batches and noise."""
    x, y, table = digits
    start = DGGNetwork(SMALL)
    set_params(start, pretrained, partial=True)
    init_gmm(start, x[:600], y[:600], SMALL, verbose=0)
    losses = {}
    for precision in ("float32", "mixed_bfloat16"):
        cfg = SMALL.replace(precision=precision)
        net = DGGNetwork(cfg)
        set_params(net, get_params(start))
        record = fit(net, x[:600], table[:600] % 600, y[:600], cfg, epochs=1)[0]
        assert all(v.dtype == "float32" for v in net.trainable_variables + net.optimizer.variables
                   if "iteration" not in v.path)
        assert np.isfinite(record["loss"]) and isinstance(record["loss"], float)
        losses[precision] = record["loss"]
    # Within bfloat16 rounding, not float32's: the gap is a one-epoch training trajectory
    # in bfloat16 against one in float32, so it depends on which kernels run each (oneDNN
    # AVX-512 bf16 vs Eigen bf16, and the float32 sgemm oneDNN picks per CPU). Measured
    # rel. gap: 2e-4 with oneDNN on AVX512_BF16, 4.3e-3 with TF_ENABLE_ONEDNN_OPTS=0 (Eigen
    # bf16), 9.4e-3 adding ONEDNN_MAX_CPU_ISA=AVX2 (AVX2 sgemm, as on an AVX2-only CPU).
    # Bound: 2e-2, about 2.5 bfloat16 epsilons (7.8e-3), so a loss term left in bfloat16 or
    # a wrong cast (errors of whole percents) still fails.
    assert losses["mixed_bfloat16"] == pytest.approx(losses["float32"], rel=2e-2)
    assert losses["mixed_bfloat16"] != losses["float32"]     # the setting did take effect
