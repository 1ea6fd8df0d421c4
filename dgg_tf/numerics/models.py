"""Keras models: the DGG VAE (encoder, decoder, classifier f2, GMM parameters)
and the plain autoencoder used for pretraining.

Layer names are the stable names of the weights dict (``encoder1`` ...
``encoder4`` = mean head, ``logvar``, ``decoder1`` (latent -> 2000) ...
``decoder4`` (-> 784, sigmoid), ``classifier``, ``gmm``). Every Dense layer
starts from PyTorch's default ``nn.Linear`` init (kernel and bias uniform in
+-1/sqrt(fan_in)), which is what the original leaves on the log-variance head
and the classifier.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from dgg_tf import backend
from dgg_tf.core.config import DGGConfig, encoder_sizes
from dgg_tf.numerics.objective import TERMS, forward_terms
from dgg_tf.numerics.step_metrics import FirstNonFinite, StepMean, StepSum


def torch_default_dense(units, name, fan_in, activation=None, dtype=None):
    """A Dense layer initialised like PyTorch's ``nn.Linear``."""
    bound = 1.0 / math.sqrt(fan_in)
    return layers.Dense(
        units, activation=activation, name=name, dtype=dtype,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


def _policy(config):
    return "mixed_bfloat16" if config.precision == "mixed_bfloat16" else "float32"


class Encoder(layers.Layer):
    """784-500-500-2000 ReLU, then a linear mean head (encoder4) and,
    for the VAE, a linear log-variance head (logvar)."""

    def __init__(self, config: DGGConfig, with_logvar=True, **kwargs):
        super().__init__(**kwargs)
        sizes = encoder_sizes(config)
        policy = _policy(config)
        self.hidden = [torch_default_dense(sizes[i + 1], f"encoder{i + 1}", sizes[i], "relu", policy)
                       for i in range(len(sizes) - 2)]
        n = len(sizes) - 1
        self.mean_head = torch_default_dense(sizes[-1], f"encoder{n}", sizes[-2], None, policy)
        self.logvar_head = (torch_default_dense(sizes[-1], "logvar", sizes[-2], None, policy)
                            if with_logvar else None)

    def call(self, x):
        h = x
        for layer in self.hidden:
            h = layer(h)
        if self.logvar_head is None:
            return ops.cast(self.mean_head(h), "float32")
        if not self.logvar_head.built:
            return (ops.cast(self.mean_head(h), "float32"),
                    ops.cast(self.logvar_head(h), "float32"))
        return self._both_heads(h)

    def _both_heads(self, h):
        """The mean and log-variance heads as ONE matrix product on the concatenated
        kernels, then split: each output column is the same dot product as in two
        Dense calls, but the 2000-wide h is read once, and its gradient is one product
        instead of two products and a sum (about 3 ms of a 0.22 s float32 step)."""
        heads = (self.mean_head, self.logvar_head)
        kernel = ops.concatenate([ops.cast(head.kernel, h.dtype) for head in heads], axis=1)
        bias = ops.concatenate([ops.cast(head.bias, h.dtype) for head in heads], axis=0)
        out = ops.cast(ops.add(ops.matmul(h, kernel), bias), "float32")
        return out[:, :self.mean_head.units], out[:, self.mean_head.units:]


class Decoder(layers.Layer):
    """10-2000-500-500 ReLU, then 500-784 with a sigmoid (decoder1 ... decoder4); with
    ``likelihood="gaussian"`` the last layer is linear (real-valued reconstructions)."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
        self.linear_output = config.likelihood == "gaussian"
        sizes = encoder_sizes(config)[::-1]
        policy = _policy(config)
        n = len(sizes) - 1
        self.dense = [torch_default_dense(sizes[i + 1], f"decoder{i + 1}", sizes[i],
                                          "relu" if i < n - 1 else None, policy)
                      for i in range(n)]

    def call(self, z):
        h = z
        for layer in self.dense:
            h = layer(h)
        if self.linear_output:
            return ops.cast(h, "float32")
        # sigmoid in float32: the reconstruction term takes log(xhat + 1e-10) of it
        return ops.sigmoid(ops.cast(h, "float32"))


class GMMParams(layers.Layer):
    """GMM means and standard deviations, [latent_dim, n_clusters] each (trainable)."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(name="gmm", **kwargs)
        shape = (config.latent_dim, config.n_clusters)
        self.mean = self.add_weight(shape=shape, initializer="random_normal", name="mean")
        self.std = self.add_weight(shape=shape, initializer="ones", name="std")
        self.built = True


# Per-step logs of the training step, as an epoch records them: the mean over the
# steps (STEP_MEANS: the ELBO terms divided by the batch size, the loss, and the
# post-step evaluation) or the sum (STEP_SUMS). gamma_sq_sum = sum_rk gamma_rk^2 is what
# the original prints as "Entropy" (a confidence: each row gives between 1/K and 1); it
# prints "Reconstruction Loss" as the SUM of recon_bce over the steps and "GMM
# variance1", our gmm_std_mean. Under likelihood="gaussian", recon_bce holds the mean
# squared error of the reconstruction instead (``post_step_reconstruction``).
STEP_MEANS = TERMS + ("loss", "recon_bce", "gmm_variance", "gmm_std_mean")
STEP_SUMS = ("gamma_sq_sum",)


def torch_bce_mean(recon, target):
    """F.binary_cross_entropy: mean over elements, log clamped at -100."""
    return -ops.mean(target * ops.maximum(ops.log(recon), -100.0)
                     + (1.0 - target) * ops.maximum(ops.log(1.0 - recon), -100.0))


def post_step_reconstruction(recon, target, likelihood):
    """The logged ``recon_bce``: torch's BCE (bernoulli), or the mean squared error
    (gaussian, where BCE of a linear output is undefined)."""
    if likelihood == "gaussian":
        return ops.mean(ops.square(target - recon))
    return torch_bce_mean(recon, target)


@keras.saving.register_keras_serializable(package="dgg_tf")
class DGGNetwork(backend.Trainer, keras.Model):
    """The trainable parts of DGG: encoder (mean, logvar), decoder, classifier f2, GMM.

    Trained the Keras way: ``training.compile_dgg`` compiles it with the original's
    optimiser, and ``fit`` runs ``train_step`` on batches from ``training.dgg_dataset``;
    ``step`` runs one given step (the audit surface). The step is backend-neutral
    (``train_on``); only "gradients, then apply" is the backend's (``backend.Trainer``).
    """

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = DGGConfig.from_dict(config)
        self.config = config
        self.encoder = Encoder(config, name="encoder")
        self.decoder = Decoder(config, name="decoder")
        # f2: one Dense latent->K with softmax, kept in float32 (it is tiny)
        self.classifier = torch_default_dense(config.n_clusters, "classifier",
                                              config.latent_dim, None, "float32")
        self.gmm = GMMParams(config)
        self.step_metrics = [StepMean(name) for name in STEP_MEANS] + \
            [StepSum(name) for name in STEP_SUMS] + [FirstNonFinite()]
        self.feed = None   # a training.BatchFeed layer while fit runs (not saved)
        self.build_all()

    def build_all(self):
        x = ops.zeros((1, self.config.input_dim))
        mean, _ = self.encoder(x)
        self.decoder(mean)
        self.classify(mean)
        self.built = True

    def classify(self, h):
        return ops.softmax(self.classifier(h), axis=-1)

    def call(self, x):
        mean, _ = self.encoder(x)
        return self.classify(mean)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "config": self.config.to_dict()}

    # ------------------------------------------------------------------ training
    def step(self, batch):
        """One step of the original from a given batch and noise, ``batch = (x_nbrs, w,
        eps)`` (optionally with the batch's labels as a fourth item): x_nbrs [B, Nn, D]
        (column 0 = the sample), graph weights w [B, Nn], noise eps [B, Nn, M]. Updates
        the network's variables and returns that step's logs: each ELBO term divided by
        B, the loss, and the original's post-step evaluation (recon_bce, gmm_variance,
        gmm_std_mean, gamma_sq_sum, pred). The audit surface: the same on every backend,
        after ``training.compile_dgg``."""
        return self.run_step(tuple(batch))     # train_on converts x_nbrs, w and eps

    def train_on(self, data):
        """The step of ``train_step`` (``backend.Trainer``). Under ``fit`` the batches are
        dicts of indices (``training.dgg_dataset``), gathered here on the device from
        ``self.feed``, with the noise drawn here; the logs are then the epoch's running
        loss (``EpochRecorder`` reads the other figures from ``step_metrics`` at the end
        of the epoch). A tuple ``(x_nbrs, w, eps[, labels])`` is one given step, as in
        ``step``; on TensorFlow, ``train_step`` takes it too."""
        if isinstance(data, dict):
            x_nbrs, w, eps = self.feed.assemble(data)
            self._step(x_nbrs, w, eps, data.get("labels"))
            return {"loss": self.step_metrics[STEP_MEANS.index("loss")].result()}
        x_nbrs, w, eps = (ops.convert_to_tensor(a, "float32") for a in data[:3])
        return self._step(x_nbrs, w, eps, data[3] if len(data) > 3 else None)

    def _step(self, x_nbrs, w, eps, labels=None):
        """Gradient step, post-step evaluation, logs summed over replicas, metrics."""
        local = ops.cast(ops.shape(x_nbrs)[0], "float32")
        total = backend.batch_total(local)
        loss, (terms, gamma) = self.apply_loss(lambda: self._loss(x_nbrs, w, eps, total))
        # the original's evaluation after the step (Q12): the B samples themselves
        x_self = x_nbrs[:, 0, :]
        mean, _ = self.encoder(x_self)
        pred = ops.argmax(self.classify(mean), axis=1)
        logs = self._post_step_logs(terms, loss, gamma, x_self, mean, local, total)
        for metric in self.step_metrics[:-1]:
            metric.update_state(logs[metric.name])
        self.step_metrics[-1].update_state(logs["loss"])
        if labels is not None and self.feed is not None and self.feed.running is not None:
            self.feed.running.update_state(pred, labels)
        return {**logs, "pred": pred}

    def _loss(self, x_nbrs, w, eps, total):
        terms, loss, gamma = forward_terms(self, x_nbrs, w, eps, self.config, total)
        return loss, (terms, gamma)

    def _post_step_logs(self, terms, loss, gamma, x_self, mean, local, total):
        """The step's logs, in the widest float (float64 on TensorFlow), summed over the
        replicas: the terms / B, the loss, the post-step evaluation, sum of gamma^2."""
        wide = backend.WIDE_FLOAT
        share = ops.cast(local / total, wide)        # 1 on a single device
        f64 = lambda t: ops.cast(t, wide)            # noqa: E731
        values = [f64(terms[k]) / f64(total) for k in TERMS] + [f64(loss)] + [
            f64(v) * share for v in (post_step_reconstruction(self.decoder(mean), x_self,
                                                              self.config.likelihood),
                                     ops.mean(ops.square(self.gmm.std)),
                                     ops.mean(self.gmm.std))] + [
            f64(ops.sum(ops.square(gamma)))]         # pre-step gamma, as printed
        values = backend.sum_over_replicas(ops.stack(values))
        return dict(zip(STEP_MEANS + STEP_SUMS, ops.unstack(values)))


class Autoencoder(keras.Model):
    """Encoder mean path and decoder, as pretrained before DGG (section 9)."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = Encoder(config, with_logvar=False, name="encoder")
        self.decoder = Decoder(config, name="decoder")
        self.decoder(self.encoder(ops.zeros((1, config.input_dim))))
        self.built = True          # built above; Keras on JAX would otherwise trace it in fit

    def call(self, x):
        return self.decoder(self.encoder(x))


def encode_mean(model, x, batch=5000):
    """Encoder means of all rows of ``x`` [N, input_dim] -> float32 [N, latent_dim], in
    batches; works for every model with an ``encoder`` (DGG, autoencoder, Siamese)."""
    x = np.asarray(x, np.float32)
    out = []
    for s in range(0, len(x), batch):
        r = model.encoder(ops.convert_to_tensor(x[s:s + batch]))
        out.append(np.asarray(r[0] if isinstance(r, (tuple, list)) else r, np.float32))
    return np.concatenate(out) if out else np.zeros((0, model.config.latent_dim), np.float32)


def dense_layers(model):
    """Every named Dense layer of a model, by its stable name."""
    found = {}
    for sub in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
        if sub is None:
            continue
        for layer in getattr(sub, "hidden", []) + [getattr(sub, "mean_head", None),
                                                   getattr(sub, "logvar_head", None)] \
                + getattr(sub, "dense", []):
            if layer is not None:
                found[layer.name] = layer
    if getattr(model, "classifier", None) is not None:
        found["classifier"] = model.classifier
    return found
