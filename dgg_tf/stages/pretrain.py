"""Autoencoder pretraining (section 9 of docs/quirks.md), our substitute for VaDE's weights.

Two schedules, chosen by ``config.pretrain_schedule``:

* ``"section9"`` - the original's intended fallback (Q11: unreachable in the
  original): greedy layer-wise autoencoders 784-500, 500-500, 500-2000, 2000-10
  (squared error summed over features / batch, SGD momentum 0.9, lr 1e-3 and
  1e-4 for the last, StepLR(70, 0.1)), then end-to-end fine-tuning of the mean
  path with Bernoulli reconstruction (summed BCE, Adam 1e-3, StepLR(30, 0.1)).
* ``"dec"`` - end-to-end from scratch as in the DEC Keras port (mean squared
  error, SGD lr 1.0 momentum 0.9, batch 256), except that our decoder ends in a
  sigmoid, as DGG's must.

Every stage trains through Keras ``fit`` (``LossTrainer``: a ``train_step`` that
computes the original's per-batch loss) on stateless seeded batches
(``train.fit.index_batches``), with the StepLR schedule, the per-epoch checkpoint
and the non-finite stop as callbacks (all from ``dgg_tf.train``). The training state
after every epoch (weights, optimizer variables, stage, epoch, history) goes to an
``"autoencoder"`` checkpoint (``train.checkpoint``) and resumes a run exactly: a run
resumed from any epoch boundary ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import time
from typing import Callable

import keras
import numpy as np
from keras import ops

from dgg_tf import backend
from dgg_tf.core.config import DGGConfig, encoder_sizes
from dgg_tf.core.files import check_output_path, fingerprint
from dgg_tf.core.inputs import check_stage_data
from dgg_tf.core.metrics import kmeans_scores
from dgg_tf.core.weight_files import load_any
from dgg_tf.numerics.models import Autoencoder, encode_mean, torch_default_dense
from dgg_tf.numerics.optimizers import TorchAdam, TorchSGD, step_lr
from dgg_tf.numerics.weights import get_params, save_weights_h5, set_params
from dgg_tf.train.checkpoint import checkpoint_path, restore_optimizer
from dgg_tf.train.fit import LossTrainer, fit_epochs, step_lr_callback
from dgg_tf.train.resumable import EpochState, ResumableStage


# ----------------------------------------------------------------------------
# losses (per batch, as the original computes them)
# ----------------------------------------------------------------------------
def squared_error_sum(x, recon):
    """sum((x - recon)^2) / batch: the greedy stages' loss."""
    return ops.sum(ops.square(x - recon)) / ops.cast(ops.shape(x)[0], "float32")


def bernoulli_nll_sum(x, recon):
    """-sum(x log(r + 1e-10) + (1 - x) log(1 - r + 1e-10)) over batch and pixels."""
    eps = backend.log_eps()
    return -ops.sum(x * ops.log(recon + eps) + (1.0 - x) * ops.log((1.0 - recon) + eps))


def gaussian_nll_sum(x, recon):
    """0.5 * sum((x - recon)^2) over batch and features: fine-tuning's loss under
    likelihood="gaussian" (a linear decoder), the negative of DGG's gaussian term."""
    return 0.5 * ops.sum(ops.square(x - recon))


def mean_squared_error(x, recon):
    """mean((x - recon)^2) over batch and pixels: the DEC schedule's loss."""
    return ops.mean(ops.square(x - recon))


# ----------------------------------------------------------------------------
# the pretraining stages
# ----------------------------------------------------------------------------
def stage_names(config):
    """layer1..layerN then finetune (section9), or end_to_end (dec)."""
    if config.pretrain_schedule == "dec":
        return ["end_to_end"]
    n = len(encoder_sizes(config)) - 1
    return [f"layer{i + 1}" for i in range(n)] + ["finetune"]


class LayerAutoencoder(keras.Model):
    """One greedy stage: encoder Dense n_in->n_hid and decoder Dense n_hid->n_in.
    First stage: ReLU on the encoder only; middle: on both; last: decoder only."""

    def __init__(self, n_in, n_hid, kind, dtype):
        super().__init__(name="layer_autoencoder")
        self.enc = torch_default_dense(n_hid, "enc", n_in,
                                       "relu" if kind in ("first", "middle") else None, dtype)
        self.dec = torch_default_dense(n_in, "dec", n_hid,
                                       "relu" if kind in ("last", "middle") else None, dtype)
        self.dec(self.enc(ops.zeros((1, n_in))))
        self.built = True          # built above; Keras on JAX would otherwise trace it in fit

    def call(self, x):
        return ops.cast(self.dec(self.enc(x)), "float32")


@dataclasses.dataclass
class Stage:
    """What one stage trains: ``network`` on ``inputs`` with ``loss(x, recon)``;
    ``write_back()`` copies a greedy stage's two layers into the autoencoder."""
    network: keras.Model
    inputs: np.ndarray
    loss: Callable
    optimizer: keras.optimizers.Optimizer
    lr: tuple                     # (base, gamma, step) of StepLR
    batch_size: int
    epochs: int
    write_back: Callable | None = None


def _stage_seed(seed, index):
    """The seed of stage ``index``'s init and shuffling (distinct per stage)."""
    return int(seed) * 1000 + index


def _make_stage(label, index, ae, x, config, seed, fresh):
    """The network, data, loss and optimizer of one stage. A greedy stage's layers
    are freshly initialised (seeded per stage) when ``fresh``, else taken from the
    autoencoder, where every epoch writes them back."""
    if label == "finetune":
        loss = gaussian_nll_sum if config.likelihood == "gaussian" else bernoulli_nll_sum
        return Stage(ae, x, loss, TorchAdam(config.finetune_lr),
                     (config.finetune_lr, config.finetune_lr_gamma, config.finetune_lr_step),
                     config.finetune_batch_size, config.finetune_epochs)
    if label == "end_to_end":
        return Stage(ae, x, mean_squared_error, TorchSGD(config.dec_lr, momentum=config.dec_momentum),
                     (config.dec_lr, 1.0, 1), config.dec_batch_size, config.dec_epochs)
    sizes = encoder_sizes(config)
    i = int(label[5:]) - 1
    last = i == len(sizes) - 2
    kind = "first" if i == 0 else ("last" if last else "middle")
    dtype = "mixed_bfloat16" if config.precision == "mixed_bfloat16" else "float32"
    if fresh:
        backend.set_seed(_stage_seed(seed, index))
    net = LayerAutoencoder(sizes[i], sizes[i + 1], kind, dtype)
    layers_ = {f"encoder{i + 1}": net.enc, f"decoder{len(sizes) - 1 - i}": net.dec}

    def write_back():
        set_params(ae, {f"{name}/{w}": ops.convert_to_numpy(v) for name, layer in layers_.items()
                        for w, v in (("W", layer.kernel), ("b", layer.bias))}, partial=True)
    if not fresh:
        current = get_params(ae)
        for name, layer in layers_.items():
            layer.kernel.assign(current[f"{name}/W"])
            layer.bias.assign(current[f"{name}/b"])
    lr = config.layerwise_last_lr if last else config.layerwise_lr
    return Stage(net, _encode_prefix(ae, x, i), squared_error_sum,
                 TorchSGD(lr, momentum=config.layerwise_momentum),
                 (lr, config.layerwise_lr_gamma, config.layerwise_lr_step),
                 config.layerwise_batch_size, config.layerwise_epochs, write_back)


def _train_stage(label, index, ae, x, config, seed, state, on_epoch, callbacks, verbose):
    """Run (the rest of) one stage through ``fit``; the state is updated and handed to
    ``on_epoch`` after every epoch."""
    done = int(state["epoch"])
    stage = _make_stage(label, index, ae, x, config, seed, fresh=done == 0)
    history = state["history"].setdefault(label, [])
    del history[done:]
    if done and state.get("optimizer") is not None:
        restore_optimizer(stage.optimizer, stage.network.trainable_variables, state["optimizer"],
                          f"pretraining checkpoint ({label})")
    base, gamma, step = stage.lr
    keep = EpochState(state, history, ae, stage.optimizer,
                      lambda epoch: step_lr(base, gamma, step, epoch, config.lr_schedule),
                      None if on_epoch is None else
                      (lambda st: on_epoch(st, ae, label, st["epoch"])), stage.write_back)
    if verbose:
        print(f"pretraining stage {label}: epochs {done + 1}..{stage.epochs}", flush=True)
    inputs = stage.inputs
    fit_epochs(LossTrainer(stage.network, lambda net, batch: stage.loss(batch, net(batch))),
               stage.optimizer, lambda index_: inputs[index_], len(stage.inputs),
               stage.batch_size, _stage_seed(seed, index), done, stage.epochs,
               [step_lr_callback(base, gamma, step, config.lr_schedule), keep,
                *callbacks], verbose, f"pretraining {label}")


def _start_state(state):
    """A private copy of ``state`` with every key set (a fresh run: stage 0, epoch 0)."""
    state = copy.deepcopy(state) if state else {}
    state.setdefault("stage", 0)
    state.setdefault("epoch", 0)
    state.setdefault("history", {})
    state.setdefault("optimizer", None)
    return state


def pretrain_autoencoder(x, config: DGGConfig, seed=0, state=None, on_epoch=None, verbose=1,
                         callbacks=()):
    """Pretrain an ``Autoencoder`` on ``x`` [N, input_dim]; returns ``(params, state)``.

    ``state`` (from an "autoencoder" checkpoint, ``train.checkpoint``) holds ``params`` (the whole
    autoencoder), ``stage`` (index of the first unfinished stage), ``epoch`` (epochs
    done in it), ``optimizer`` (that stage's optimizer variables) and ``history``
    (per stage, per epoch: loss, lr, seconds). Resuming from the state of any epoch
    boundary gives the same weights as an uninterrupted run.

    ``on_epoch(state, ae, label, epoch)`` is called after every epoch (``epoch``
    1-based) and at the end of every stage (``epoch`` None); ``callbacks`` are Keras
    callbacks added to every stage's ``fit``.
    """
    x, _ = check_stage_data(x, config, "pretraining")
    return pretrain_checked(x, config, seed, state, on_epoch, verbose, callbacks)


def pretrain_checked(x, config, seed=0, state=None, on_epoch=None, verbose=1, callbacks=()):
    """``pretrain_autoencoder`` on data already checked (``core.inputs``)."""
    stages = stage_names(config)
    state = _start_state(state)  # never mutate the caller's
    backend.set_seed(seed)
    backend.set_precision(config.precision)
    ae = Autoencoder(config)
    if state.get("params"):
        set_params(ae, state["params"], partial=True, source="pretraining checkpoint")
    for index, label in enumerate(stages):
        if index < state["stage"]:
            continue
        _train_stage(label, index, ae, x, config, seed, state, on_epoch, callbacks, verbose)
        state.update(stage=index + 1, epoch=0, optimizer=None, params=get_params(ae))
        if on_epoch is not None:
            on_epoch(state, ae, label, None)
    state.setdefault("params", get_params(ae))
    return get_params(ae), state


def _encode_prefix(ae, x, n_layers, batch=5000):
    """Outputs of the first ``n_layers`` encoder layers (the next stage's input)."""
    if n_layers == 0:
        return x
    layers_ = ae.encoder.hidden[:n_layers]
    out = []
    for s in range(0, len(x), batch):
        h = ops.convert_to_tensor(x[s:s + batch])
        for layer in layers_:
            h = layer(h)
        out.append(np.asarray(ops.cast(h, "float32")))
    return np.concatenate(out)


# ----------------------------------------------------------------------------
# the whole job: checkpointed pretraining into a weights file
# ----------------------------------------------------------------------------
def check_pretrain_files(out_path, *, resume=False, init=None, config=None):
    """The checks ``pretrain_to_file`` makes before any work, for callers to run before
    loading data: ``out_path`` is new (unless ``resume``) and writable, and ``init``
    (if given) is a readable autoencoder weights file. Raises ValueError (OSError
    for unreadable files); returns the ``init`` params or None."""
    out_path = os.fspath(out_path)
    if os.path.exists(out_path) and not resume:
        raise ValueError(f"{out_path} exists; remove it or pass --resume")
    check_output_path(out_path, "output")
    if init is None:
        return None
    return load_any(init, config)[0]


def _kmeans_line(ae, x, labels, config, n_init):
    """K-means ACC/NMI of the encoder means: ``(metrics, printable line)``."""
    _, metrics = kmeans_scores(encode_mean(ae, x), labels, config.n_clusters, n_init,
                               config.kmeans_random_state)
    return metrics, f"K-means(n_init={n_init}) ACC={metrics['kmeans_acc']:.4f} " \
                    f"NMI={metrics['kmeans_nmi']:.4f}"


def pretrain_to_file(config, x, out_path, *, labels=None, seed=0, resume=False, init=None,
                     verbose=1, provenance=None, callbacks=(), kmeans_every=10):
    """Pretrain the autoencoder on ``x`` and write it to ``out_path`` (our flat HDF5
    weights format, atomically); returns ``(params, metrics)``.

    After every epoch the training state goes to ``OUT.ckpt.npz`` (``checkpoint_path``);
    ``resume=True`` continues from it exactly (refusing one made with another seed,
    schedule or data). ``init``: a weights file (any format ``weights.load_any``
    reads) to start from instead of random init. ``labels`` (evaluation only): K-means
    ACC/NMI of the encoder means every ``kmeans_every`` epochs and at the end, stored
    as ``metrics``. ``provenance``: extra fields for the file (command, data, ...).
    """
    init_params = check_pretrain_files(out_path, resume=resume, init=init, config=config)
    x, labels = check_stage_data(x, config, "pretraining", labels)
    t0 = time.time()
    job = ResumableStage(checkpoint_path(out_path), "autoencoder",
                         {"seed": seed, "schedule": config.pretrain_schedule,
                          "data_fingerprint": fingerprint(x)},
                         {**(provenance or {}), "precision": config.precision,
                          "init_weights": os.fspath(init) if init else None,
                          "config": config.to_dict()})
    state = (job.resume(verbose) if resume else None) or \
        (None if init_params is None else {"params": init_params})

    def on_epoch(state, ae, label, epoch):
        job.save(state)
        if labels is not None and verbose and (epoch is None or epoch % kmeans_every == 0):
            print(f"[{label} {epoch or 'done'}] {_kmeans_line(ae, x, labels, config, 1)[1]} "
                  f"elapsed={time.time() - t0:.0f}s", flush=True)

    params, state = pretrain_checked(x, config, seed, state, on_epoch, verbose, callbacks)
    metrics = {}
    if labels is not None:
        ae = Autoencoder(config)
        set_params(ae, params)
        metrics, line = _kmeans_line(ae, x, labels, config, config.kmeans_n_init)
        if verbose:
            print(line, flush=True)
    epochs = {label: len(h) for label, h in state["history"].items()}
    save_weights_h5(out_path, params, job.description(
        stage=state["stage"], history=state["history"], metrics=metrics, epochs=epochs))
    if verbose:
        print(f"wrote {out_path} ({time.time() - t0:.0f} s)", flush=True)
    return params, metrics
