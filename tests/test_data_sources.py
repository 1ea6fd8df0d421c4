"""Where the commands look for MNIST (--data, $DGG_DATA, ../shared/data/mnist, the Keras
cache, a download) and the message that lists every place when none has it."""
import hashlib

import numpy as np
import pytest

from dgg_tf.cli import commands
from dgg_tf.core import data


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
    def offline(url, timeout):
        raise OSError("Temporary failure in name resolution")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("DGG_DATA", "")
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
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


def test_the_download_lands_in_the_keras_cache_only_with_the_published_hash(monkeypatch,
                                                                           tmp_path):
    """The fallback download (no network here: urlopen is replaced) writes Keras' cache
    file atomically when its SHA-256 matches, and refuses a file that does not."""
    import io
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x_train=rng.integers(0, 256, (3, 28, 28), np.uint8),
             y_train=np.arange(3), x_test=rng.integers(0, 256, (2, 28, 28), np.uint8),
             y_test=np.arange(2))
    body = buf.getvalue()

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: Response(body))
    monkeypatch.setattr(data, "KERAS_MNIST_SHA256", hashlib.sha256(body).hexdigest())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    x, y = data.load_mnist(None)
    assert x.shape == (5, 784) and list(y) == [0, 1, 2, 0, 1]
    assert (tmp_path / "keras" / "datasets" / "mnist.npz").read_bytes() == body
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "other"))
    monkeypatch.setattr(data, "KERAS_MNIST_SHA256", "0" * 64)
    with pytest.raises(data.DataError, match="SHA-256"):
        data.load_mnist(None)
    assert not (tmp_path / "other" / "datasets" / "mnist.npz").exists()
