"""dgg_tf: a Keras/TensorFlow port of DGG (Yang et al., ICCV 2019), faithful to the
original PyTorch code, with named switches for every paper/code discrepancy."""
from .config import DGGConfig

__all__ = ["DGGConfig"]
__version__ = "0.2.0"
