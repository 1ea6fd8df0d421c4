"""dgg_tf: a Keras/TensorFlow port of DGG (Yang et al., ICCV 2019), faithful to the
original PyTorch code, with named switches for every paper/code discrepancy."""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .config import DGGConfig  # noqa: E402

__all__ = ["DGGConfig"]
__version__ = "0.1.0"
