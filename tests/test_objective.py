"""ELBO terms, priors, similarity weights and the schedule against NumPy by hand."""
import numpy as np
import pytest
import reference as ref

from dgg_tf.core.config import DGGConfig
from dgg_tf.numerics import objective, objective_numpy
from dgg_tf.numerics.graph import similarity_weights
from dgg_tf.numerics.optimizers import step_lr

pytestmark = pytest.mark.backends    # also run with KERAS_BACKEND=jax in CI

TINY = DGGConfig(input_dim=12, encoder_dims=(9, 8, 16), latent_dim=3, n_clusters=4)


def batch(rng, b=5, nn=4, cfg=TINY):
    x = rng.random((b, nn, cfg.input_dim)).astype(np.float32)
    w = rng.random((b, nn)).astype(np.float32)
    eps = rng.standard_normal((b, nn, cfg.latent_dim)).astype(np.float32)
    return x, w, eps


@pytest.mark.parametrize("classifier_input,prior_mode", [("mean", "code"), ("sample", "paper"),
                                                         ("sample", "code"), ("mean", "paper")])
def test_loss_terms_match_numpy_reference(classifier_input, prior_mode):
    rng = np.random.default_rng(1)
    cfg = TINY.replace(classifier_input=classifier_input, prior=prior_mode)
    params = ref.random_params(cfg, rng)
    x, w, eps = batch(rng)
    got = objective_numpy.loss_terms(params, x, w, eps, cfg)
    want = ref.terms(params, x, w, eps, classifier_input, prior_mode)
    assert set(got) == {"reconstruction", "gmm", "cluster_entropy", "latent_entropy", "prior", "loss"}
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=2e-4, abs=1e-4), k
    # the loss is minus the sum of the five terms over B
    assert got["loss"] == pytest.approx(-sum(got[k] for k in objective.TERMS) / len(x), rel=1e-5)


def test_switches_change_what_they_should():
    rng = np.random.default_rng(2)
    params = ref.random_params(TINY, rng)
    x, w, eps = batch(rng)
    code = objective_numpy.loss_terms(params, x, w, eps, TINY)
    sample = objective_numpy.loss_terms(params, x, w, eps, TINY.replace(classifier_input="sample"))
    # the classifier input does not touch reconstruction or the latent entropy
    assert sample["reconstruction"] == pytest.approx(code["reconstruction"], rel=1e-6)
    assert sample["latent_entropy"] == pytest.approx(code["latent_entropy"], rel=1e-6)
    assert abs(sample["cluster_entropy"] - code["cluster_entropy"]) > 1e-4


def test_prior_code_and_paper_by_hand():
    rng = np.random.default_rng(3)
    g = rng.dirichlet(np.ones(4), size=(3, 5)).astype(np.float32)
    w = rng.random((3, 5)).astype(np.float32)
    code = objective_numpy.prior(g, w, "code")
    paper = objective_numpy.prior(g, w, "paper")
    np.testing.assert_allclose(code, ref.prior(g.astype(np.float64), w, "code"), rtol=1e-5)
    np.testing.assert_allclose(paper, ref.prior(g.astype(np.float64), w, "paper"), rtol=1e-5)
    np.testing.assert_allclose(paper.sum(1), 1.0, rtol=1e-6)
    # the code's pc is not normalised: its row sums are the weights' row sums
    np.testing.assert_allclose(code.sum(1), w.sum(1), rtol=1e-5)
    # a single hand-checked entry: i=0, k=2
    by_hand = sum(w[0, j] * (g[0, 0, 2] + g[0, j, 2]) for j in range(1, 5))
    norm = sum(w[0, j] * (g[0, 0, k] + g[0, j, k]) for j in range(1, 5) for k in range(4))
    assert paper[0, 2] == pytest.approx(by_hand / norm, rel=1e-5)
    with pytest.raises(ValueError, match="prior mode"):
        objective_numpy.prior(g, w, "lagrange")
    with pytest.raises(ValueError, match="gamma_nbrs"):
        objective_numpy.prior(g, w[:, :3], "code")


def test_no_inform_and_kl_weights():
    x = np.random.default_rng(4).random((12, 21, 6)).astype(np.float32)
    w = similarity_weights(x, kind="no_inform")
    np.testing.assert_allclose(w[:, 0], 0.5, rtol=1e-6)
    np.testing.assert_allclose(w[:, 1:], 0.025, rtol=1e-6)
    kl = similarity_weights(x, kind="kl")
    raw = np.array([1 / 21] + [1 / 20] * 20)
    np.testing.assert_allclose(kl, np.tile(raw / raw.sum(), (12, 1)), rtol=1e-6)


def _by_hand(x, kind, divisor):
    """divisor: [Nn] (code mode, per column) or scalar (honoured)."""
    d = ((x - x[:, :1]) ** 2).sum(-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = d / divisor
    s = {"gauss": np.exp(-d), "inv_gauss": np.exp(d), "student_t": 1 / (1 + d)}[kind]
    s[:, 0] = s[:, 1:].sum(1)
    return s if kind == "gauss" else s / s.sum(1, keepdims=True)


@pytest.mark.parametrize("kind", ["gauss", "inv_gauss", "student_t"])
def test_distance_similarities_sigma_quirk_and_honoured(kind):
    rng = np.random.default_rng(5)
    x = (rng.random((14, 5, 6)) * 0.5).astype(np.float32)
    d = ((x - x[:, :1]) ** 2).sum(-1).astype(np.float64)
    row11 = np.sort(d[11])            # Q7: the sorted distances of the 12th SAMPLE
    got = similarity_weights(x, sigma=10.0, kind=kind, sigma_mode="code")
    np.testing.assert_allclose(got, _by_hand(x, kind, row11[None, :]), rtol=1e-4)
    honoured = similarity_weights(x, sigma=10.0, kind=kind, sigma_mode="honoured")
    np.testing.assert_allclose(honoured, _by_hand(x, kind, 10.0), rtol=1e-5)
    assert np.all(np.isfinite(got))  # column 0 was 0/0, then overwritten
    if kind == "gauss":
        np.testing.assert_allclose(honoured[:, 0], honoured[:, 1:].sum(1), rtol=1e-5)
    else:
        np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-5)


def test_sigma_quirk_small_batch_is_a_clear_error():
    x = np.random.default_rng(6).random((11, 4, 3)).astype(np.float32)
    for kind in ("no_inform", "gauss"):
        with pytest.raises(ValueError, match="at least 12 samples"):
            similarity_weights(x, kind=kind, sigma_mode="code")
    assert similarity_weights(x, kind="gauss", sigma_mode="honoured").shape == (11, 4)


def test_similarity_bad_input():
    with pytest.raises(ValueError, match="x_nbrs"):
        similarity_weights(np.zeros((12, 6)))
    with pytest.raises(ValueError, match="unknown"):
        similarity_weights(np.zeros((12, 3, 2)), kind="cosine")


def test_code_schedule_off_by_one():
    for e in range(26):
        assert step_lr(0.002, 0.9, 10, e, "code") == pytest.approx(0.002 * 0.9 ** ((e + 1) // 10))
        assert step_lr(0.002, 0.9, 10, e, "nominal") == pytest.approx(0.002 * 0.9 ** (e // 10))
    assert step_lr(0.002, 0.9, 10, 8) == pytest.approx(0.002)
    assert step_lr(0.002, 0.9, 10, 9) == pytest.approx(0.0018)


def test_loss_terms_bad_input():
    rng = np.random.default_rng(7)
    params = ref.random_params(TINY, rng)
    x, w, eps = batch(rng)
    with pytest.raises(ValueError, match="x_nbrs must be"):
        objective_numpy.loss_terms(params, x[:, :, :5], w, eps, TINY)
    with pytest.raises(ValueError, match="w must be"):
        objective_numpy.loss_terms(params, x, w[:, :2], eps, TINY)
    with pytest.raises(ValueError, match="eps must be"):
        objective_numpy.loss_terms(params, x, w, eps[..., :2], TINY)
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        objective_numpy.loss_terms(params, bad, w, eps, TINY)
    wrong = dict(params)
    wrong["encoder1/W"] = wrong["encoder1/W"][:5]
    with pytest.raises(ValueError, match="encoder1/W"):
        objective_numpy.loss_terms(wrong, x, w, eps, TINY)


def _saturated(rng):
    """Params whose decoder outputs are exactly 1.0 (first half of the pixels) and
    exactly 0.0 (the rest) whatever the input, binary targets, and the float64 value of
    sum_r w_r * reconstruction_r: each pixel whose target disagrees with its output adds
    log(0 + 1e-10), each that agrees log(1 + 1e-10) = 1e-10."""
    params = ref.random_params(TINY, rng)
    half = TINY.input_dim // 2
    params["decoder4/W"][:] = 0.0
    params["decoder4/b"][:half] = 60.0         # sigmoid(60) == 1.0 in float32
    params["decoder4/b"][half:] = -200.0       # sigmoid(-200) == 0.0 in float32
    x = (rng.random((12, 3, TINY.input_dim)) < 0.5).astype(np.float32)
    w = rng.random((12, 3)).astype(np.float32)
    eps = rng.standard_normal((12, 3, TINY.latent_dim)).astype(np.float32)
    xhat = np.r_[np.ones(half), np.zeros(TINY.input_dim - half)]
    wrong = np.abs(x[:, :1, :] - xhat).sum(axis=-1)             # [12, 1], per sample
    right = TINY.input_dim - wrong
    per_row = wrong * np.log(np.float64(np.float32(1e-10))) + right * 1e-10
    return params, (x, w, eps), xhat.astype(np.float32), float(np.sum(w * per_row))


def test_compiled_steps_keep_the_epsilon_where_outputs_saturate():
    """xhat exactly 1.0 or 0.0: every compiled log(. + 1e-10) stays log(1e-10) there, as
    the original computes it. A compiler that reassociates (1 - xhat) + 1e-10 into
    (1 + 1e-10) - xhat gets log(0) = -inf (XLA on JAX did; TensorFlow's graph optimiser
    does without the variable epsilon). Checked in the training step (net.step, compiled
    on every backend), the pretraining loss and the ELBO terms, each compiled."""
    from dgg_tf import backend
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.numerics.weights import set_params
    from dgg_tf.stages.dgg import compile_dgg
    from dgg_tf.stages.pretrain import bernoulli_nll_sum
    rng = np.random.default_rng(8)
    params, (x, w, eps), xhat, want = _saturated(rng)
    net = compile_dgg(DGGNetwork(TINY))
    set_params(net, params)
    logs = net.step((x, w, eps))
    assert float(logs["reconstruction"]) * len(x) == pytest.approx(want, rel=1e-6)
    assert np.isfinite(float(logs["loss"]))
    target = x[:, 0, :]
    recon = np.broadcast_to(xhat, target.shape).copy()
    nll = backend.compiled(bernoulli_nll_sum)(target, recon)
    wrong = np.abs(target - xhat).sum()
    assert float(nll) == pytest.approx(-wrong * np.log(np.float64(np.float32(1e-10))), rel=1e-6)
    # gamma exactly 0 and 1: -gamma log(gamma + 1e-10) is 0, not 0 * log(0) = NaN
    gamma = np.eye(TINY.n_clusters, dtype=np.float32)[rng.integers(0, TINY.n_clusters, 5)]
    m = TINY.latent_dim
    ones = np.ones((m, TINY.n_clusters), np.float32)
    zeros = np.zeros((5, m), np.float32)
    terms = backend.compiled(lambda t, r, g, log_pc: objective.elbo_terms(
        t, r, zeros, zeros, g, log_pc, np.ones(5, np.float32), 0.0 * ones, ones))(
        target[:5], recon[:5], gamma, np.zeros_like(gamma))
    assert float(terms["cluster_entropy"]) == pytest.approx(0.0, abs=1e-8)
    assert float(terms["reconstruction"]) == pytest.approx(
        -float(nll) * float(np.abs(target[:5] - xhat).sum()) / wrong, rel=1e-6)


def test_zero_gamma_cluster_code_gives_nan_paper_takes_the_limit():
    """A cluster whose gamma is exactly 0 for a sample and all its neighbours: the code's
    log(pc) has no epsilon, so 0 * log(0) = NaN (as in the original); the paper prior
    takes 0 log 0 = 0 and stays finite, gradients included."""
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.numerics.weights import set_params
    rng = np.random.default_rng(9)
    params = ref.random_params(TINY, rng)
    params["classifier/W"][:, 3] = 0.0
    params["classifier/b"][3] = -200.0            # softmax gives exactly 0 for cluster 3
    x, w, eps = batch(rng)
    code = objective_numpy.loss_terms(params, x, w, eps, TINY)
    assert np.isnan(code["prior"]) and np.isnan(code["loss"])
    paper_cfg = TINY.replace(prior="paper")
    paper = objective_numpy.loss_terms(params, x, w, eps, paper_cfg)
    assert np.isfinite(paper["prior"]) and np.isfinite(paper["loss"])
    # float64 does not underflow there (gamma ~ 1e-87), and its value is the limit
    want = ref.terms(params, x, w, eps, "mean", "paper")
    assert paper["prior"] == pytest.approx(want["prior"], rel=1e-4)
    net = DGGNetwork(paper_cfg)
    set_params(net, params)
    _, _, grads = objective_numpy.loss_and_gradients(net, x, w, eps, paper_cfg)
    assert all(np.all(np.isfinite(g)) for g in grads)
