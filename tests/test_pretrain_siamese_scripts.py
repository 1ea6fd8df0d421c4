"""reproduce/pretrain_mnist.py and reproduce/siamese_mnist.py: a tiny end-to-end run of
each on a 150-image MNIST-shaped .npz with a 784-16-16-32-10 network, --resume, and
exit code 2 with one 'error:' line for user errors, before the data is read."""
import importlib.util
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dgg_tf.core.tables import load_table
from dgg_tf.core.weight_files import load_weights_h5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 150
SMALL = ["--set", "encoder_dims=16,16,32"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "reproduce", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pretrain_mnist = _script("pretrain_mnist")
siamese_mnist = _script("siamese_mnist")


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """A Keras-style mnist.npz of 150 digits upscaled to 28 x 28 (120 train, 30 test)."""
    d = load_digits()
    imgs = np.pad(np.kron(d.images[:N], np.ones((3, 3))), ((0, 0), (2, 2), (2, 2))) * (255 / 16)
    imgs = imgs.astype(np.uint8)
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(path, x_train=imgs[:120], y_train=d.target[:120], x_test=imgs[120:],
             y_test=d.target[120:N])
    return str(path)


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_pretrain_script_end_to_end_and_resume(tiny_mnist, tmp_path, capsys):
    out = str(tmp_path / "ae.h5")
    args = ["--data", tiny_mnist, "--out", out, "--schedule", "dec", "--seed", "1", *SMALL,
            "--set", "dec_epochs=2", "--set", "dec_batch_size=50", "--set", "kmeans_n_init=1"]
    assert pretrain_mnist.main(args) == 0
    params, prov = load_weights_h5(out)
    assert prov["schedule"] == "dec" and prov["epochs"] == {"end_to_end": 2}
    assert prov["data"] == f"MNIST train+test, {N} images" and "--schedule dec" in prov["command"]
    assert "kmeans_acc" in prov["metrics"] and params["encoder1/W"].shape == (784, 16)
    assert os.path.exists(out + ".ckpt.npz")
    capsys.readouterr()
    assert pretrain_mnist.main(args) == 2                     # exists, no --resume
    assert "exists; remove it or pass --resume" in one_error_line(capsys)
    assert pretrain_mnist.main(args + ["--resume"]) == 0      # all done: rewritten, same weights
    again, _ = load_weights_h5(out)
    for name in params:
        np.testing.assert_array_equal(again[name], params[name])


def test_siamese_script_end_to_end(tiny_mnist, tmp_path, capsys):
    out_w, out_t = str(tmp_path / "s.h5"), str(tmp_path / "nb.npz")
    args = ["--data", tiny_mnist, "--weights", "none", "--epochs", "2", "--out-weights", out_w,
            "--out-table", out_t, "--verbose", "0", *SMALL, "--set", "siamese_batch_size=200",
            "--set", "table_top=30", "--set", "table_columns=12", "--set", "num_neighbors=5",
            "--set", "kmeans_n_init=1"]
    assert siamese_mnist.main(args) == 0
    _, prov = load_weights_h5(out_w)
    assert prov["epochs_run"] == 2 and prov["init_weights"] == "none"
    assert len(prov["history"]) == 2
    for path, mode in ((out_t, "random_top100"), (str(tmp_path / "nb_nearest.npz"), "nearest")):
        table, settings = load_table(path, n_samples=N)
        assert table.shape == (N, 13) and settings["neighbor_selection"] == mode
    capsys.readouterr()
    assert siamese_mnist.main(args) == 2
    assert "exists; remove it or pass --resume" in one_error_line(capsys)


def _pretrain_args(tmp):
    return ["--out", f"{tmp}/ae.h5"]


def _siamese_args(tmp):
    return ["--weights", "none", "--out-weights", f"{tmp}/s.h5", "--out-table", f"{tmp}/t.npz"]


@pytest.mark.parametrize("script, extra, message", [
    ("pretrain", ["--out", "{tmp}/file/ae.h5"], "not a writable directory"),
    ("pretrain", ["--init", "{tmp}/missing.h5"], "missing.h5 does not exist"),
    ("pretrain", ["--set", "pretrain_schedule=layerwise"], "choose one of section9, dec"),
    ("pretrain", ["--set", "no_such=1"], "unknown setting"),
    ("siamese", ["--weights", "{tmp}/missing.h5"], "do not exist"),
    ("siamese", ["--subset", "50"], "at least 101"),
    ("siamese", ["--out-table", "{tmp}/file/t.npz"], "not a writable directory"),
])
def test_scripts_user_errors_exit_2_before_reading_data(tmp_path, capsys, script, extra, message):
    (tmp_path / "file").write_text("")
    module, base = {"pretrain": (pretrain_mnist, _pretrain_args),
                    "siamese": (siamese_mnist, _siamese_args)}[script]
    args = ["--data", str(tmp_path / "never_read.npz"), *base(tmp_path),
            *[a.format(tmp=tmp_path) for a in extra]]
    assert module.main(args) == 2
    assert message in one_error_line(capsys)      # not the data's error: checked before it
