"""Config presets and validation; MNIST loading from every accepted format."""
import gzip
import pickle
import struct

import numpy as np
import pytest

from dgg_tf.core.config import CHOICES, DGGConfig
from dgg_tf.core.data import DataError, load_mnist
from dgg_tf.core.metrics import cluster_acc, nmi


def test_presets():
    code, paper = DGGConfig.preset("code"), DGGConfig.preset("paper")
    assert code == DGGConfig()
    assert (paper.classifier_input, paper.prior, paper.similarity, paper.sigma_mode, paper.sigma) == \
        ("sample", "paper", "gauss", "honoured", 10.0)
    differing = {k for k, v in code.to_dict().items() if paper.to_dict()[k] != v}
    assert differing == {"classifier_input", "prior", "similarity", "sigma_mode"}
    assert code.kmeans_n_init == paper.kmeans_n_init == 10
    assert code.precision == paper.precision == "float32"
    for name, allowed in CHOICES.items():
        assert getattr(code, name) == allowed[0] or name == "pretrain_schedule"


def test_unknown_names_and_values_are_rejected_with_choices():
    with pytest.raises(ValueError, match="choose one of mean, sample"):
        DGGConfig(classifier_input="z")
    with pytest.raises(ValueError, match="unknown setting"):
        DGGConfig().replace(learning_rte=1.0)
    with pytest.raises(ValueError, match="unknown variant"):
        DGGConfig.preset("both")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        DGGConfig().with_assignments(["prior"])
    with pytest.raises(ValueError, match="expects a float"):
        DGGConfig().with_assignments(["sigma=ten"])
    with pytest.raises(ValueError, match="num_neighbors"):
        DGGConfig(num_neighbors=41)
    c = DGGConfig().with_assignments(["sigma=3", "prior=paper", "encoder_dims=8,8,16", "epochs=5"])
    assert (c.sigma, c.prior, c.encoder_dims, c.epochs) == (3.0, "paper", (8, 8, 16), 5)
    assert DGGConfig.from_dict(c.to_dict()) == c


def _idx(path, arr, gz=True):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.fixture
def tiny_mnist(tmp_path):
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    ytr, yte = rng.integers(0, 10, 6), rng.integers(0, 10, 3)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", xtr)
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", ytr)
    _idx(tmp_path / "t10k-images-idx3-ubyte", xte, gz=False)   # plain files work too
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", yte)
    return tmp_path, np.concatenate([xtr, xte]), np.concatenate([ytr, yte])


def test_idx_dir_npz_and_pickle(tiny_mnist, tmp_path):
    d, images, labels = tiny_mnist
    x, y = load_mnist(d)
    assert x.shape == (9, 784) and x.dtype == np.float32
    np.testing.assert_allclose(x, images.reshape(9, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=images[:6].astype(np.uint8), y_train=labels[:6],
             x_test=images[6:].astype(np.uint8), y_test=labels[6:])
    x2, y2 = load_mnist(npz)
    np.testing.assert_array_equal(x2, x)
    pkl = tmp_path / "mnist.pkl.gz"
    with gzip.open(pkl, "wb") as f:
        pickle.dump(((images[:6].astype(np.uint8), labels[:6]), (images[6:].astype(np.uint8), labels[6:])), f)
    x3, y3 = load_mnist(pkl)
    np.testing.assert_array_equal(x3, x)
    np.testing.assert_array_equal(y3, y)


def test_bad_data_sources(tiny_mnist, tmp_path):
    d, _, _ = tiny_mnist
    # truncated file: the error names it
    with gzip.open(d / "train-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz is truncated"):
        load_mnist(d)
    (d / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte"):
        load_mnist(d)
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 5)))
    with pytest.raises(DataError, match="lacks the array"):
        load_mnist(bad)


def test_real_mnist_if_present():
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    if not os.path.isdir(path):
        pytest.skip("shared MNIST not present")
    x, y = load_mnist(path)
    assert x.shape == (70000, 784) and y.shape == (70000,)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(y[:5], [5, 0, 4, 1, 9])       # the first training labels
    np.testing.assert_array_equal(np.bincount(y[60000:]),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_acc(y, np.array([1, 1, 0, 0, 2, 2])) == 1.0      # permuted labels
    assert cluster_acc(y, np.array([1, 1, 0, 2, 2, 2])) == pytest.approx(5 / 6)
    assert cluster_acc(y, np.zeros(6, int)) == pytest.approx(2 / 6)
    assert nmi(y, np.array([2, 2, 0, 0, 1, 1])) == pytest.approx(1.0)
    # NMI 'max' vs 'arithmetic' on a known case: H(Y)=log 3, H(P)=log 2
    p = np.array([0, 0, 0, 1, 1, 1])
    from sklearn.metrics import mutual_info_score
    mi = mutual_info_score(y, p)
    assert nmi(y, p, "max") == pytest.approx(mi / np.log(3))
    assert nmi(y, p) == pytest.approx(mi / ((np.log(3) + np.log(2)) / 2))
    with pytest.raises(ValueError, match="differ in length"):
        cluster_acc(y, y[:3])
    with pytest.raises(ValueError, match="1-D"):
        nmi(y[None], y[None])
