"""TorchAdam / TorchSGD against hand-written PyTorch update rules, and step_lr."""
import keras
import numpy as np
import pytest

from dgg_tf.numerics.optimizers import TorchAdam, TorchSGD, step_lr

pytestmark = pytest.mark.backends    # also run with KERAS_BACKEND=jax in CI

W0 = np.array([[0.5, -1.0, 2.0], [0.1, 0.0, -0.3]])
TARGET = np.array([[1.0, 1.0, 1.0], [-1.0, 0.5, 0.0]])


def grad(w):
    """Gradient of a small quadratic, evaluated at the current weights."""
    return 0.7 * (w - TARGET) ** 3 + 0.2 * w


def torch_adam(w, steps, lr, l2, eps, b1=0.9, b2=0.999):
    """torch.optim.Adam (amsgrad=False): L2 added to the gradient, eps outside
    sqrt(v) / sqrt(bias2)."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):
        g = grad(w) + l2 * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
        w = w - lr / (1 - b1 ** t) * m / denom
    return w


def torch_sgd(w, steps, lr, momentum, l2):
    """torch.optim.SGD without dampening or Nesterov: buf = g on the first step."""
    buf = None
    for _ in range(steps):
        g = grad(w) + l2 * w
        buf = g if buf is None else momentum * buf + g
        w = w - lr * buf
    return w


def run(optimizer, steps):
    var = keras.Variable(W0.astype(np.float32))
    for _ in range(steps):
        optimizer.apply_gradients([(grad(var.numpy().astype(np.float64)).astype(np.float32), var)])
    return var.numpy()


@pytest.mark.parametrize("l2, eps", [(0.0, 1e-8), (1e-2, 1e-8), (1e-2, 0.05)])
def test_torch_adam_matches_pytorch_rule(l2, eps):
    got = run(TorchAdam(0.1, epsilon=eps, l2=l2), 3)
    want = torch_adam(W0, 3, 0.1, l2, eps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want, W0, atol=1e-2)  # the three steps did move the weights


def test_torch_adam_differs_from_keras_adam_epsilon():
    """Keras' Adam puts epsilon elsewhere; with a large eps the results differ."""
    ours = run(TorchAdam(0.1, epsilon=0.05), 3)
    keras_adam = run(keras.optimizers.Adam(0.1, epsilon=0.05), 3)
    assert np.max(np.abs(ours - keras_adam)) > 1e-3


@pytest.mark.parametrize("momentum, l2", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-2)])
def test_torch_sgd_matches_pytorch_rule(momentum, l2):
    got = run(TorchSGD(0.05, momentum=momentum, l2=l2), 3)
    want = torch_sgd(W0, 3, 0.05, momentum, l2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_learning_rate_assignment_between_steps():
    """pretrain.py assigns the StepLR rate before each epoch; the update uses it."""
    opt = TorchSGD(0.05, momentum=0.9)
    var = keras.Variable(W0.astype(np.float32))
    w, buf = W0.copy(), None
    for lr in (0.05, 0.005, 0.0005):
        opt.learning_rate.assign(lr)
        opt.apply_gradients([(grad(var.numpy().astype(np.float64)).astype(np.float32), var)])
        g = grad(w)
        buf = g if buf is None else 0.9 * buf + g
        w = w - lr * buf
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)


def test_step_lr_code_and_nominal():
    # StepLR(3, 0.1) from 1.0: code mode decays one epoch early (Q8)
    code = [step_lr(1.0, 0.1, 3, e) for e in range(7)]
    nominal = [step_lr(1.0, 0.1, 3, e, mode="nominal") for e in range(7)]
    np.testing.assert_allclose(code, [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01])
    np.testing.assert_allclose(nominal, [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01])
    # the original's DGG schedule: 0.002 * 0.9 ** ((e + 1) // 10)
    assert step_lr(0.002, 0.9, 10, 8) == pytest.approx(0.002)
    assert step_lr(0.002, 0.9, 10, 9) == pytest.approx(0.0018)
    assert step_lr(0.002, 0.9, 10, 9, mode="nominal") == pytest.approx(0.002)
    with pytest.raises(ValueError, match="lr_schedule must be one of code, nominal"):
        step_lr(1.0, 0.1, 3, 0, mode="paper")


FUSED = [(lambda: TorchAdam(0.1, l2=1e-2), lambda: torch_adam(W0, 2, 0.1, 1e-2, 1e-8)),
         (lambda: TorchSGD(0.05, momentum=0.9), lambda: torch_sgd(W0, 2, 0.05, 0.9, 0.0))]


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("make, want", FUSED, ids=["adam", "sgd"])
def test_update_runs_as_one_compiled_function(make, want):
    """Unless a fit plans fewer than ``FUSE_MIN_STEPS`` steps, the update goes through one
    XLA function (guards the Keras hook it overrides: if Keras renamed it, updates would
    still be right but ~2x slower); a short fit's goes through Keras' own update. Both
    follow PyTorch's rule."""
    from dgg_tf.backend import tensorflow_backend
    fused = make()
    np.testing.assert_allclose(run(fused, 2), want(), rtol=1e-5, atol=1e-6)
    assert len(fused._one_pass) == 1
    short = make()
    tensorflow_backend.plan_steps(short, tensorflow_backend.FUSE_MIN_STEPS - 1)
    np.testing.assert_allclose(run(short, 2), want(), rtol=1e-5, atol=1e-6)
    assert not getattr(short, "_one_pass", None)
