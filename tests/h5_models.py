"""Helpers of test_backends' model.h5 test, for either backend: train a tiny network
and save its flat model.h5, or load one; each writes (and returns) the cluster
probabilities and assignments of 100 fixed rows as PATH.save.npz / PATH.load.npz."""
import keras
import numpy as np

from dgg_tf import backend
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.weight_files import load_weights_h5
from dgg_tf.numerics.evaluation import predict
from dgg_tf.numerics.models import DGGNetwork, encode_mean
from dgg_tf.numerics.weights import get_params, save_weights_h5, set_params
from dgg_tf.stages.dgg import compile_dgg, train_dgg

CONFIG = DGGConfig(input_dim=12, encoder_dims=(9, 8, 16), latent_dim=3, n_clusters=4,
                   batch_size=20, num_neighbors=3, epochs=1)


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((100, 12)).astype(np.float32)
    return x, np.stack([np.arange(100)] + [rng.permutation(100) for _ in range(3)], 1)


def _outputs(net, x, path):
    out = {"proba": np.asarray(net.classify(encode_mean(net, x)), np.float32),
           "pred": predict(net, x)}
    np.savez(path, **out)
    return out


def train_and_save(path):
    """One epoch of training, then model.h5 at ``path``."""
    x, table = _data()
    backend.set_seed(0)                 # on JAX without importing TensorFlow
    net = compile_dgg(DGGNetwork(CONFIG))
    train_dgg(net, x, table, verbose=0)
    save_weights_h5(path, get_params(net), {"backend": keras.backend.backend()})
    return _outputs(net, x, f"{path}.save.npz")


def load_and_predict(path):
    """A fresh network with the weights of ``path``."""
    x, _ = _data()
    net = DGGNetwork(CONFIG)
    set_params(net, load_weights_h5(path)[0])
    return _outputs(net, x, f"{path}.load.npz")
