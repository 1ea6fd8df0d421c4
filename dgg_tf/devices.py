"""Devices and distribution: split the CPU into logical devices (to test distribution
on a machine without accelerators) and pick a ``tf.distribute`` strategy."""
from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("default", "mirrored")


def split_cpu(n):
    """Make ``n`` logical CPU devices; must run before TensorFlow first uses a device."""
    if n is None or n <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))])
    except RuntimeError as e:
        raise ValueError(f"cannot split the CPU into {n} devices: TensorFlow has already "
                           f"initialised its devices ({e})") from None


def make_strategy(name="default"):
    """``default``: TensorFlow's default (one device). ``mirrored``: MirroredStrategy over
    every GPU, or every logical CPU when there is no GPU (see ``split_cpu``)."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)
