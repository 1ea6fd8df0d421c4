"""Devices and distribution: split the CPU into logical devices (to test distribution
on a machine without accelerators) and pick a strategy: ``tf.distribute``'s
MirroredStrategy on TensorFlow, ``keras.distribution.DataParallel`` on JAX (both in
``dgg_tf.backend``)."""
from __future__ import annotations

from dgg_tf import backend

STRATEGIES = ("default", "mirrored")


def split_cpu(n):
    """Make ``n`` logical CPU devices; must run before the backend first uses a device."""
    backend.split_cpu(n)


def make_strategy(name="default"):
    """``default``: one device. ``mirrored``: every GPU, or every logical CPU when there
    is no GPU (see ``split_cpu``), each with a copy of the variables and a share of each
    batch."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    return backend.make_strategy(name)
