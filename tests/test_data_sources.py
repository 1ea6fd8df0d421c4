"""Where the commands look for MNIST (--data, $DGG_DATA, ../shared/data/mnist, the Keras
cache, a download) and the message that lists every place when none has it."""
import keras
import pytest

from dgg_tf import commands, data


def test_search_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DGG_DATA", str(tmp_path / "env"))
    assert commands.mnist_source("given") == "given"                 # --data first
    assert commands.mnist_source() == str(tmp_path / "env")          # then $DGG_DATA
    monkeypatch.delenv("DGG_DATA")
    monkeypatch.setattr(commands, "SHARED_MNIST", str(tmp_path))     # then the shared directory
    assert commands.mnist_source() == str(tmp_path)
    monkeypatch.setattr(commands, "SHARED_MNIST", str(tmp_path / "absent"))
    assert commands.mnist_source() is None                           # then the cache, a download


def test_nothing_found_lists_every_place_and_the_real_reason(monkeypatch, tmp_path):
    def offline():
        raise OSError("Temporary failure in name resolution")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("DGG_DATA", "")
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(data.DataError) as err:
        data.load_mnist(None)
    text = str(err.value)
    for place in ("--data (not given)", "$DGG_DATA (not set)", data.SHARED_MNIST,
                  str(tmp_path / "keras" / "datasets" / "mnist.npz"),
                  "OSError: Temporary failure in name resolution"):
        assert place in text, place


def test_a_dgg_data_path_that_does_not_exist_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("DGG_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(data.DataError, match="nowhere does not exist"):
        data.load_mnist(commands.mnist_source())
