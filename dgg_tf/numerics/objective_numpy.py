"""The DGG objective on NumPy inputs, for the audit and the reference tests: the prior,
the five ELBO terms, the loss and its gradients for given weights, batch and noise.

Each function runs ``objective.forward_terms``, the function the training step
differentiates, so the audit measures the trained computation, not a copy of it.
"""
from __future__ import annotations

import numpy as np
from keras import ops

from dgg_tf import backend
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.objective import forward_terms, prior_ops
from dgg_tf.numerics.weights import set_params


def check_batch(x_nbrs, w, eps, config):
    """Validate audit/training inputs; returns float32 arrays."""
    x_nbrs = np.asarray(x_nbrs, np.float32)
    w = np.asarray(w, np.float32)
    eps = np.asarray(eps, np.float32)
    if x_nbrs.ndim != 3 or x_nbrs.shape[2] != config.input_dim:
        raise ValueError(f"x_nbrs must be [B, Nn, {config.input_dim}], got {x_nbrs.shape}")
    b, nn = x_nbrs.shape[:2]
    if w.shape != (b, nn):
        raise ValueError(f"w must be [B, Nn] = {(b, nn)}, got {w.shape}")
    if eps.shape != (b, nn, config.latent_dim):
        raise ValueError(f"eps must be [B, Nn, M] = {(b, nn, config.latent_dim)}, got {eps.shape}")
    for name, a in (("x_nbrs", x_nbrs), ("w", w), ("eps", eps)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
    return x_nbrs, w, eps


def prior(gamma_nbrs, w, mode):
    """NumPy front of ``prior_ops``: gamma_nbrs [B, Nn, K], w [B, Nn] -> [B, K]."""
    gamma_nbrs = np.asarray(gamma_nbrs, np.float32)
    w = np.asarray(w, np.float32)
    if gamma_nbrs.ndim != 3 or w.shape != gamma_nbrs.shape[:2]:
        raise ValueError(f"prior expects gamma_nbrs [B, Nn, K] and w [B, Nn]; got "
                         f"{gamma_nbrs.shape} and {w.shape}")
    return ops.convert_to_numpy(prior_ops(ops.convert_to_tensor(gamma_nbrs),
                                          ops.convert_to_tensor(w), mode)).astype(np.float64)


def build_network(params, config):
    """A DGGNetwork of ``config``'s sizes holding ``params`` (checked)."""
    net = DGGNetwork(config)
    set_params(net, params)
    return net


def loss_terms(params, x_nbrs, w, eps, config):
    """The five ELBO terms and the loss, as Python floats, for given weights and noise.

    Runs ``forward_terms``, the function the training step differentiates.
    """
    x_nbrs, w, eps = check_batch(x_nbrs, w, eps, config)
    net = build_network(params, config)
    terms, loss, _ = forward_terms(net, *as_tensors(x_nbrs, w, eps), config)
    out = {k: float(v) for k, v in terms.items()}
    out["loss"] = float(loss)
    return out


def loss_and_gradients(net, x_nbrs, w, eps, config):
    """Terms, loss and the gradient of the loss for every trainable variable (for the audit)."""
    def fn(*batch):
        terms, loss, _ = forward_terms(net, *batch, config)
        return loss, terms
    loss, terms, grads = backend.gradient_function(net.trainable_variables, fn, compile=False)(
        *as_tensors(x_nbrs, w, eps))
    return ({k: float(v) for k, v in terms.items()}, float(loss),
            [np.asarray(ops.convert_to_numpy(g), np.float64) for g in grads])


def as_tensors(*arrays):
    """NumPy inputs of the step (x_nbrs, w, eps, ...) as float32 backend tensors."""
    return tuple(ops.convert_to_tensor(np.asarray(a, np.float32)) for a in arrays)
