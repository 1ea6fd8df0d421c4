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
import tensorflow as tf
from keras import layers, ops

from .config import DGGConfig


def torch_default_dense(units, name, fan_in, activation=None, dtype=None):
    """A Dense layer initialised like PyTorch's ``nn.Linear``."""
    bound = 1.0 / math.sqrt(fan_in)
    return layers.Dense(
        units, activation=activation, name=name, dtype=dtype,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


def _policy(config):
    return "mixed_bfloat16" if config.precision == "mixed_bfloat16" else "float32"


def encoder_sizes(config):
    return [config.input_dim, *config.encoder_dims, config.latent_dim]


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
        out = ops.cast(tf.nn.bias_add(ops.matmul(h, kernel), bias), "float32")
        return out[:, :self.mean_head.units], out[:, self.mean_head.units:]


class Decoder(layers.Layer):
    """10-2000-500-500 ReLU, then 500-784 with a sigmoid (decoder1 ... decoder4)."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
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
        # sigmoid in float32: the reconstruction term takes log(xhat + 1e-10) of it
        return ops.sigmoid(ops.cast(h, "float32"))


class GMMParams(layers.Layer):
    """GMM means and standard deviations, [latent_dim, n_clusters] each (trainable)."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(name="gmm", **kwargs)
        shape = (config.latent_dim, config.n_clusters)
        self.mean = self.add_weight(shape=shape, initializer="random_normal", name="mean")
        self.std = self.add_weight(shape=shape, initializer="ones", name="std")


class DGGNetwork(keras.Model):
    """The trainable parts of DGG: encoder (mean, logvar), decoder, classifier f2, GMM."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = Encoder(config, name="encoder")
        self.decoder = Decoder(config, name="decoder")
        # f2: one Dense latent->K with softmax, kept in float32 (it is tiny)
        self.classifier = torch_default_dense(config.n_clusters, "classifier",
                                              config.latent_dim, None, "float32")
        self.gmm = GMMParams(config)
        self.build_all()

    def build_all(self):
        x = ops.zeros((1, self.config.input_dim))
        mean, _ = self.encoder(x)
        self.decoder(mean)
        self.classify(mean)

    def classify(self, h):
        return ops.softmax(self.classifier(h), axis=-1)

    def call(self, x):
        mean, _ = self.encoder(x)
        return self.classify(mean)


class Autoencoder(keras.Model):
    """Encoder mean path and decoder, as pretrained before DGG (section 9)."""

    def __init__(self, config: DGGConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.encoder = Encoder(config, with_logvar=False, name="encoder")
        self.decoder = Decoder(config, name="decoder")
        self.decoder(self.encoder(ops.zeros((1, config.input_dim))))

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
