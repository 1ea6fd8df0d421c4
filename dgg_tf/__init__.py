"""dgg_tf: a Keras/TensorFlow port of DGG (Yang et al., ICCV 2019), faithful to the
original PyTorch code, with named switches for every paper/code discrepancy.

``dgg_tf.DGG`` (the scikit-learn style estimator) is imported on first use, so that
``import dgg_tf`` stays light (no TensorFlow, no environment changes)."""
from .config import DGGConfig

__all__ = ["DGG", "DGGConfig"]
__version__ = "0.2.0"


def __getattr__(name):
    if name == "DGG":
        from .estimator import DGG  # lazy: import dgg_tf stays light (no scikit-learn, TF)
        return DGG
    raise AttributeError(f"module 'dgg_tf' has no attribute {name!r}")
