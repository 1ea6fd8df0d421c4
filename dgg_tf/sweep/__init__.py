"""Sweeps: named configurations x seeds, each cell an ordinary run directory of
``pipeline.run_dgg`` (audit off) under one sweep directory, and what they found.

``protocols`` (sizes, flips, the diagnostic grid), ``cells`` (plan.json, inputs.npz,
one run directory per cell), ``run`` (running the cells; ``python -m dgg_tf.sweep``
runs one), ``curves`` (per-epoch ACC of every cell), ``results`` (sweep.json, paired
differences with intervals) and ``summary`` (sweep.md and the figures). Only ``run``
needs TensorFlow.
"""
