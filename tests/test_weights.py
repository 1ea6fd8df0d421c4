"""Weight files: the original VaDE/DGG layouts, our flat HDF5 format, load_any."""
import os

import h5py
import numpy as np
import pytest

from dgg_tf.core.config import DGGConfig
from dgg_tf.core.weight_files import (FORMAT_TAG, WeightsError, autoencoder_layers, check_params,
                                      expected_shapes, load_any, load_dgg_out, load_vade_h5,
                                      load_weights_h5)
from dgg_tf.numerics.models import Autoencoder, DGGNetwork
from dgg_tf.numerics.weights import get_params, save_weights_h5, set_params

SMALL = DGGConfig(input_dim=12, encoder_dims=(8, 8, 16), latent_dim=3)
# sizes 12-8-8-16-3: the kernels every loader must return, in Keras layout [in, out]
SHAPES = {"encoder1": (12, 8), "encoder2": (8, 8), "encoder3": (8, 16), "encoder4": (16, 3),
          "decoder1": (3, 16), "decoder2": (16, 8), "decoder3": (8, 8), "decoder4": (8, 12)}


def reference_params(seed=0):
    """Distinct random arrays for every autoencoder layer of SMALL."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer, (n_in, n_out) in SHAPES.items():
        params[f"{layer}/W"] = rng.normal(size=(n_in, n_out)).astype(np.float32)
        params[f"{layer}/b"] = rng.normal(size=n_out).astype(np.float32)
    return params


def write_vade(path, params, keras2=False):
    """Mimic a Keras weight file: layer_names, per layer weight_names (kernel, bias)."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if keras2 else f
        names = ["input_1"] + list(SHAPES)
        root.attrs["layer_names"] = [n.encode() for n in names]
        root.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        for layer in SHAPES:
            g = root.create_group(layer)
            if keras2:  # Keras 2: layer/layer/kernel:0
                wn = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            else:       # Keras 1.0.8: layer_W, layer_b
                wn = [f"{layer}_W", f"{layer}_b"]
            g.attrs["weight_names"] = [n.encode() for n in wn]
            g.create_dataset(wn[0], data=params[f"{layer}/W"])
            g.create_dataset(wn[1], data=params[f"{layer}/b"])


# w_1..w_4 = encoder1..4, w_5 = decoder4, w_6 = decoder3, w_7 = decoder2, w_8 = decoder1
DGG_ORDER = ["encoder1", "encoder2", "encoder3", "encoder4",
             "decoder4", "decoder3", "decoder2", "decoder1"]


def write_dgg(directory, params):
    os.makedirs(directory, exist_ok=True)
    for k, layer in enumerate(DGG_ORDER, start=1):
        np.savetxt(os.path.join(directory, f"w_{k}.out"), params[f"{layer}/W"], fmt="%.18e", delimiter=",")
        np.savetxt(os.path.join(directory, f"b_{k}.out"), params[f"{layer}/b"], fmt="%.18e", delimiter=",")
    return directory


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == np.float32, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# ---------------------------------------------------------------- shapes
def test_expected_shapes_default_config():
    shapes = expected_shapes()
    assert [shapes[f"encoder{i}/W"] for i in range(1, 5)] == [(784, 500), (500, 500), (500, 2000), (2000, 10)]
    assert [shapes[f"decoder{i}/W"] for i in range(1, 5)] == [(10, 2000), (2000, 500), (500, 500), (500, 784)]
    assert shapes["decoder4/b"] == (784,)
    assert autoencoder_layers() == list(SHAPES)


# ---------------------------------------------------------------- VaDE
def test_vade_keras1_layout(tmp_path):
    params = reference_params()
    write_vade(tmp_path / "ae_mnist_weights.h5", params)
    assert_same(load_vade_h5(tmp_path / "ae_mnist_weights.h5", SMALL), params)


def test_vade_keras2_model_weights_layout(tmp_path):
    params = reference_params(1)
    write_vade(tmp_path / "ae.h5", params, keras2=True)
    got = load_vade_h5(tmp_path / "ae.h5", SMALL)
    assert_same(got, params)
    assert got["decoder1/W"].shape == (3, 16) and got["decoder4/W"].shape == (8, 12)


def test_vade_wrong_shape_names_file_and_layer(tmp_path):
    params = reference_params()
    params["encoder3/W"] = params["encoder3/W"].T.copy()  # transposed kernel
    write_vade(tmp_path / "ae.h5", params)
    with pytest.raises(WeightsError, match=r"ae\.h5: encoder3/W has shape \(16, 8\), expected \(8, 16\) \(transposed"):
        load_vade_h5(tmp_path / "ae.h5", SMALL)


def test_vade_default_config_rejects_small_file(tmp_path):
    write_vade(tmp_path / "ae.h5", reference_params())
    with pytest.raises(WeightsError, match=r"encoder1/W has shape \(12, 8\), expected \(784, 500\)"):
        load_vade_h5(tmp_path / "ae.h5")


def test_vade_nan_names_layer(tmp_path):
    params = reference_params()
    params["decoder2/b"][3] = np.nan
    write_vade(tmp_path / "ae.h5", params)
    with pytest.raises(WeightsError, match=r"vade_h5: .*ae\.h5: decoder2/b contains NaN"):
        load_vade_h5(tmp_path / "ae.h5", SMALL)


def test_vade_missing_layer(tmp_path):
    params = reference_params()
    with h5py.File(tmp_path / "ae.h5", "w") as f:
        f.attrs["layer_names"] = [b"encoder1"]
        g = f.create_group("encoder1")
        g.attrs["weight_names"] = [b"encoder1_W", b"encoder1_b"]
        g["encoder1_W"], g["encoder1_b"] = params["encoder1/W"], params["encoder1/b"]
    with pytest.raises(WeightsError, match=r"ae\.h5: layer encoder2 not found"):
        load_vade_h5(tmp_path / "ae.h5", SMALL)


def test_truncated_hdf5_is_a_weights_error(tmp_path):
    write_vade(tmp_path / "ae.h5", reference_params())
    data = (tmp_path / "ae.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:len(data) // 3])
    for loader in (lambda p: load_vade_h5(p, SMALL), load_weights_h5, lambda p: load_any(p, SMALL)):
        with pytest.raises(WeightsError, match=r"cut\.h5: cannot read it as HDF5 \(truncated or corrupt"):
            loader(tmp_path / "cut.h5")


def test_missing_vade_file(tmp_path):
    with pytest.raises(WeightsError, match=r"nope\.h5 does not exist \(expected VaDE"):
        load_vade_h5(tmp_path / "nope.h5", SMALL)


# ---------------------------------------------------------------- DGG .out
def test_dgg_out_mapping_and_orientation(tmp_path):
    params = reference_params(2)
    d = write_dgg(tmp_path / "pretrained_weight", params)
    # the fixture really is the original's layout: biases one value per line
    assert len((tmp_path / "pretrained_weight" / "b_5.out").read_text().splitlines()) == 12
    got = load_dgg_out(d, SMALL)
    assert_same(got, params)
    np.testing.assert_array_equal(got["decoder4/W"], np.loadtxt(os.path.join(d, "w_5.out"), delimiter=","))
    np.testing.assert_array_equal(got["decoder1/b"], np.loadtxt(os.path.join(d, "b_8.out")).astype(np.float32))


def test_dgg_out_missing_file(tmp_path):
    d = write_dgg(tmp_path / "w", reference_params())
    os.remove(os.path.join(d, "w_6.out"))
    with pytest.raises(WeightsError, match=r"w_6\.out is missing \(expected decoder3/W of shape \(8, 8\)\)"):
        load_dgg_out(d, SMALL)


def test_dgg_out_wrong_shape_and_nan(tmp_path):
    params = reference_params()
    d = write_dgg(tmp_path / "w", params)
    np.savetxt(os.path.join(d, "w_5.out"), params["decoder3/W"], fmt="%.18e", delimiter=",")
    with pytest.raises(WeightsError, match=r"w_5\.out: decoder4/W has shape \(8, 8\), expected \(8, 12\)"):
        load_dgg_out(d, SMALL)
    write_dgg(d, params)
    bad = params["encoder2/b"].copy()
    bad[0] = np.nan
    np.savetxt(os.path.join(d, "b_2.out"), bad, fmt="%.18e", delimiter=",")
    with pytest.raises(WeightsError, match=r"b_2\.out: encoder2/b contains NaN"):
        load_dgg_out(d, SMALL)


def test_dgg_out_unparsable_and_not_a_directory(tmp_path):
    d = write_dgg(tmp_path / "w", reference_params())
    (tmp_path / "w" / "w_1.out").write_text("1,2,x\n")
    with pytest.raises(WeightsError, match=r"w_1\.out: cannot parse encoder1/W"):
        load_dgg_out(d, SMALL)
    with pytest.raises(WeightsError, match="is not a directory"):
        load_dgg_out(tmp_path / "absent", SMALL)


# ---------------------------------------------------------------- our format
@pytest.mark.backends
def test_own_format_round_trip_with_provenance(tmp_path):
    params = reference_params()
    params["gmm/mean"] = np.arange(9, dtype=np.float32).reshape(3, 3)
    prov = {"command": "python x.py --out y", "seed": 3, "metrics": {"acc": np.float32(0.5)},
            "history": {"layer1": [{"epoch": 1, "loss": 2.5}]}}
    path = tmp_path / "mine.h5"
    save_weights_h5(path, params, prov)
    assert sorted(os.listdir(tmp_path)) == ["mine.h5"]  # no temporary file left
    got, got_prov = load_weights_h5(path)
    assert_same(got, params)
    assert got_prov["command"] == "python x.py --out y" and got_prov["seed"] == 3
    assert got_prov["metrics"] == {"acc": 0.5}
    assert got_prov["history"] == {"layer1": [{"epoch": 1, "loss": 2.5}]}
    assert "date" in got_prov and "numpy" in got_prov["library_versions"]
    # readable with h5py alone, as pretrained/README.md documents
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_TAG
        assert isinstance(f["encoder1"], h5py.Group) and f["encoder1/W"].dtype == np.float32
        np.testing.assert_array_equal(f["encoder1"]["W"][()], params["encoder1/W"])


def test_save_failure_keeps_existing_file_and_no_temp(tmp_path):
    path = tmp_path / "mine.h5"
    good = reference_params()
    save_weights_h5(path, good, {"seed": 0})
    bad = reference_params(5)
    bad["encoder4/W"][0, 0] = np.inf
    with pytest.raises(WeightsError, match="encoder4/W: it contains NaN or Inf"):
        save_weights_h5(path, bad, {"seed": 1})
    assert sorted(os.listdir(tmp_path)) == ["mine.h5"]
    got, prov = load_weights_h5(path)
    assert_same(got, good)
    assert prov["seed"] == 0


def test_load_weights_h5_rejects_foreign_hdf5(tmp_path):
    write_vade(tmp_path / "ae.h5", reference_params())
    with pytest.raises(WeightsError, match=r"ae\.h5 is not a dgg_tf weights file"):
        load_weights_h5(tmp_path / "ae.h5")


# ---------------------------------------------------------------- load_any
def test_load_any_detects_each_format(tmp_path):
    params = reference_params()
    write_vade(tmp_path / "vade.h5", params)
    write_vade(tmp_path / "vade2.h5", params, keras2=True)
    write_dgg(tmp_path / "dgg", params)
    save_weights_h5(tmp_path / "ours.h5", params, {"seed": 7})
    got, prov = load_any(tmp_path / "vade.h5", SMALL)
    assert_same(got, params)
    assert prov == {"source": "vade_h5", "path": str(tmp_path / "vade.h5")}
    got, prov = load_any(tmp_path / "vade2.h5", SMALL)
    assert_same(got, params)
    assert prov["source"] == "vade_h5"
    got, prov = load_any(tmp_path / "dgg", SMALL)
    assert_same(got, params)
    assert prov == {"source": "dgg_out", "path": str(tmp_path / "dgg")}
    got, prov = load_any(tmp_path / "ours.h5", SMALL)
    assert_same(got, params)
    assert prov["seed"] == 7
    # our format is checked against a config only when one is given
    load_any(tmp_path / "ours.h5")
    with pytest.raises(WeightsError, match=r"ours\.h5: decoder1/W has shape \(3, 16\), expected \(10, 2000\)"):
        load_any(tmp_path / "ours.h5", DGGConfig())


def test_load_any_unknown_format(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"PK\x03\x04 not hdf5 at all")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    for name in ("weights.npz", "other.h5"):
        with pytest.raises(WeightsError, match=name.replace(".", r"\.") + r": unrecognised weights format; accepted: .*dgg_tf.*VaDE.*w_k\.out"):
            load_any(tmp_path / name, SMALL)
    with pytest.raises(WeightsError, match=r"gone\.h5 does not exist"):
        load_any(tmp_path / "gone.h5", SMALL)


def test_check_params_required():
    with pytest.raises(WeightsError, match="src: missing encoder2/W"):
        check_params({"encoder1/W": np.zeros((12, 8))}, SMALL, "src", required=["encoder2/W"])
    # unknown names are checked for finiteness only
    check_params({"siamese1/W": np.ones((5, 5))}, SMALL, "src")
    with pytest.raises(WeightsError, match="siamese1/W contains NaN"):
        check_params({"siamese1/W": np.full((2,), np.nan)}, SMALL, "src")


# ---------------------------------------------------------------- into models
@pytest.mark.backends
def test_partial_set_params_into_dgg_and_autoencoder(tmp_path):
    params = reference_params(3)
    write_dgg(tmp_path / "dgg", params)
    loaded, _ = load_any(tmp_path / "dgg", SMALL)
    net = DGGNetwork(SMALL)
    before = get_params(net)
    assigned = set_params(net, loaded, partial=True, source="dgg_out")
    assert sorted(assigned) == sorted(params)
    after = get_params(net)
    for name in params:
        np.testing.assert_array_equal(after[name], params[name])
    for name in ("logvar/W", "logvar/b", "classifier/W", "classifier/b", "gmm/mean", "gmm/std"):
        np.testing.assert_array_equal(after[name], before[name])
    ae = Autoencoder(SMALL)
    set_params(ae, loaded)  # the autoencoder has exactly these names
    assert_same(get_params(ae), params)
    with pytest.raises(WeightsError, match="names do not match the model"):
        set_params(net, loaded)  # not partial: logvar/classifier/gmm missing


def test_source_commit_of_this_checkout_and_outside_git(tmp_path, monkeypatch):
    import subprocess

    from dgg_tf.core import weight_files
    from dgg_tf.core.data import REPO as root
    from dgg_tf.numerics import weights
    commit = weight_files.source_commit()
    if os.path.isdir(os.path.join(root, ".git")):
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        assert commit.split("+")[0] == head and len(head) == 40
    assert weights.library_versions()["dgg_tf_commit"] == commit

    def no_git(*a, **k):
        raise FileNotFoundError("git")
    monkeypatch.setattr(subprocess, "run", no_git)
    assert weight_files.source_commit() == "unknown"
