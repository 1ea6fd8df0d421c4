"""Autoencoder pretraining (section 9 of the spec), our substitute for VaDE's weights.

Two schedules, chosen by ``config.pretrain_schedule``:

* ``"section9"`` - the original's intended fallback (Q11: unreachable in the
  original): greedy layer-wise autoencoders 784-500, 500-500, 500-2000, 2000-10
  (squared error summed over features / batch, SGD momentum 0.9, lr 1e-3 and
  1e-4 for the last, StepLR(70, 0.1)), then end-to-end fine-tuning of the mean
  path with Bernoulli reconstruction (summed BCE, Adam 1e-3, StepLR(30, 0.1)).
* ``"dec"`` - end-to-end from scratch as in the DEC Keras port (mean squared
  error, SGD lr 1.0 momentum 0.9, batch 256), except that our decoder ends in a
  sigmoid, as DGG's must.

Stages run in order; after each epoch the caller's ``on_epoch`` callback gets
the current weights (checkpointing), and a finished run can be resumed stage by
stage from the state dict it returns.
"""
from __future__ import annotations

import copy
import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from .config import DGGConfig
from .objective import _LOG_EPS  # a variable: see objective.py
from .models import Autoencoder, encoder_sizes, torch_default_dense
from .optimizers import TorchAdam, TorchSGD, step_lr
from .weights import get_params, set_params


def _stage_names(config):
    n = len(encoder_sizes(config)) - 1
    return [f"layer{i + 1}" for i in range(n)] + ["finetune"] if config.pretrain_schedule == "section9" \
        else ["end_to_end"]


class LayerAutoencoder(keras.Model):
    """One greedy stage: encoder Dense n_in->n_hid and decoder Dense n_hid->n_in.
    First stage: ReLU on the encoder only; middle: on both; last: decoder only."""

    def __init__(self, n_in, n_hid, kind, dtype):
        super().__init__(name="layer_autoencoder")
        self.enc = torch_default_dense(n_hid, "enc", n_in, "relu" if kind in ("first", "middle") else None, dtype)
        self.dec = torch_default_dense(n_in, "dec", n_hid, "relu" if kind in ("last", "middle") else None, dtype)
        self.dec(self.enc(ops.zeros((1, n_in))))

    def call(self, x):
        return ops.cast(self.dec(self.enc(x)), "float32")


def _run_epochs(step_fn, optimizer, data, batch_size, epochs, lr_of_epoch, rng, label,
                on_epoch, start_epoch=0, verbose=1):
    """Shuffled mini-batch epochs with a Progbar; returns per-epoch mean losses."""
    n = len(data)
    losses = []
    for epoch in range(start_epoch, epochs):
        optimizer.learning_rate.assign(lr_of_epoch(epoch))
        order = rng.permutation(n)
        steps = (n + batch_size - 1) // batch_size
        bar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss"])
        if verbose:
            print(f"{label} epoch {epoch + 1}/{epochs} lr={lr_of_epoch(epoch):.3g}")
        total, t0 = 0.0, time.time()
        for s in range(steps):
            batch = tf.constant(data[order[s * batch_size:(s + 1) * batch_size]])
            loss = float(step_fn(batch))
            if not np.isfinite(loss):
                raise FloatingPointError(f"{label}: loss is {loss} at epoch {epoch + 1}, batch {s + 1}")
            total += loss
            bar.update(s + 1, [("loss", total / (s + 1))])
        losses.append(total / steps)
        if on_epoch is not None:
            on_epoch(label, epoch + 1, total / steps, time.time() - t0)
    return losses


def _make_step(model, optimizer, loss_fn):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x, model(x))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return step


def squared_error_sum(x, recon):
    """sum((x - recon)^2) / batch: the greedy stages' loss."""
    return ops.sum(ops.square(x - recon)) / ops.cast(ops.shape(x)[0], "float32")


def bernoulli_nll_sum(x, recon):
    """-sum(x log(r + 1e-10) + (1 - x) log(1 - r + 1e-10)) over batch and pixels."""
    return -ops.sum(x * ops.log(recon + _LOG_EPS) + (1.0 - x) * ops.log((1.0 - recon) + _LOG_EPS))


def gaussian_nll_sum(x, recon):
    """0.5 * sum((x - recon)^2) over batch and features: fine-tuning's loss under
    likelihood="gaussian" (a linear decoder), the negative of DGG's gaussian term."""
    return 0.5 * ops.sum(ops.square(x - recon))


def mean_squared_error(x, recon):
    return ops.mean(ops.square(x - recon))


def pretrain_autoencoder(x, config: DGGConfig, seed=0, state=None, on_epoch=None, verbose=1):
    """Pretrain an ``Autoencoder`` on ``x`` [N, input_dim]; returns ``(params, state)``.

    ``state`` (from a checkpoint) holds ``params``, ``stage`` (index of the first
    unfinished stage) and ``history``. Resuming a greedy layer stage restarts it;
    resuming the end-to-end stages (finetune, end_to_end) continues after the last
    finished epoch from the checkpointed weights, with the learning-rate schedule
    continued but the optimiser's moments and the shuffling order started afresh
    (so a resumed run is close to, not identical with, an uninterrupted one).
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != config.input_dim:
        raise ValueError(f"pretraining expects x of shape [N, {config.input_dim}], got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("pretraining: x contains NaN or Inf")
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    dtype = "mixed_bfloat16" if config.precision == "mixed_bfloat16" else "float32"
    ae = Autoencoder(config)
    state = copy.deepcopy(state) if state else {"stage": 0, "history": {}}  # never mutate the caller's
    if state.get("params"):
        set_params(ae, state["params"], partial=True, source="pretraining checkpoint")
    stages = _stage_names(config)
    sizes = encoder_sizes(config)

    def checkpoint(label, epoch, loss, seconds):
        state["history"].setdefault(label, []).append({"epoch": epoch, "loss": loss, "seconds": seconds})
        if on_epoch is not None:
            on_epoch(state, ae, label, epoch)

    for index, label in enumerate(stages):
        if index < state["stage"]:
            continue
        done = len(state["history"].get(label, [])) if not label.startswith("layer") else 0
        state["history"][label] = state["history"].get(label, [])[:done]
        if label.startswith("layer"):
            i = int(label[5:]) - 1
            last = i == len(sizes) - 2
            kind = "first" if i == 0 else ("last" if last else "middle")
            stage = LayerAutoencoder(sizes[i], sizes[i + 1], kind, dtype)
            lr = config.layerwise_last_lr if last else config.layerwise_lr
            opt = TorchSGD(lr, momentum=config.layerwise_momentum)
            inputs = _encode_prefix(ae, x, i)
            _run_epochs(_make_step(stage, opt, squared_error_sum), opt, inputs,
                        config.layerwise_batch_size, config.layerwise_epochs,
                        lambda e: step_lr(lr, config.layerwise_lr_gamma, config.layerwise_lr_step, e, config.lr_schedule),
                        rng, label, checkpoint, verbose=verbose)
            enc_name = f"encoder{i + 1}"
            dec_name = f"decoder{len(sizes) - 1 - i}"
            set_params(ae, {f"{enc_name}/W": stage.enc.kernel.numpy(), f"{enc_name}/b": stage.enc.bias.numpy(),
                            f"{dec_name}/W": stage.dec.kernel.numpy(), f"{dec_name}/b": stage.dec.bias.numpy()},
                       partial=True)
        elif label == "finetune":
            opt = TorchAdam(config.finetune_lr)
            _run_epochs(_make_step(ae, opt, gaussian_nll_sum if config.likelihood == "gaussian"
                                          else bernoulli_nll_sum), opt, x, config.finetune_batch_size,
                        config.finetune_epochs,
                        lambda e: step_lr(config.finetune_lr, config.finetune_lr_gamma,
                                          config.finetune_lr_step, e, config.lr_schedule),
                        rng, label, checkpoint, start_epoch=done, verbose=verbose)
        else:  # end_to_end (DEC-style)
            opt = TorchSGD(config.dec_lr, momentum=config.dec_momentum)
            _run_epochs(_make_step(ae, opt, mean_squared_error), opt, x, config.dec_batch_size,
                        config.dec_epochs, lambda e: config.dec_lr, rng, label, checkpoint,
                        start_epoch=done, verbose=verbose)
        state["stage"] = index + 1
        state["params"] = get_params(ae)
        if on_epoch is not None:
            on_epoch(state, ae, label, None)
    return get_params(ae), state


def _encode_prefix(ae, x, n_layers, batch=5000):
    """Outputs of the first ``n_layers`` encoder layers (the next stage's input)."""
    if n_layers == 0:
        return x
    layers_ = ae.encoder.hidden[:n_layers]
    out = []
    for s in range(0, len(x), batch):
        h = tf.constant(x[s:s + batch])
        for layer in layers_:
            h = layer(h)
        out.append(np.asarray(ops.cast(h, "float32")))
    return np.concatenate(out)

