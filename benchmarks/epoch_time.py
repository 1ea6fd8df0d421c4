"""Seconds per step of a whole training epoch through ``fit`` (device-side gather,
graph weights, noise, step, logs and callbacks), full-size network, B = 100, Nn = 21,
on random data, side by side with the step alone (``step_time.measure``) in the same
process, on the Keras backend of ``KERAS_BACKEND``; the target is at most 1.03 x. Two
epochs run in one ``fit``; the second is timed (the first includes tracing).

    python benchmarks/epoch_time.py [--samples 20000] [--precision float32]
        [--steps-per-execution 1] [--steps 30]

``--steps``: how many steps the step alone is timed over (its median is the ratio's
denominator).

``step_time.py`` prints the same ratio for every precision (and on two backends).
Run it on an otherwise idle machine.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import measure, measure_epoch  # noqa: E402  (the sibling benchmark)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--precision", default="float32")
    p.add_argument("--steps-per-execution", type=int, default=1)
    p.add_argument("--steps", type=int, default=30, help="steps of the step-alone timing")
    args = p.parse_args()
    per_step = measure_epoch(args.precision, args.samples, args.steps_per_execution)
    step = measure(args.precision, args.steps)
    steps = -(-args.samples // 100)
    print(f"{args.precision}: {per_step:.3f} s per step over a {steps}-step epoch through fit "
          f"(no labels, so no full-pass evaluation); the step alone {step:.3f} s; ratio "
          f"{per_step / step:.3f}")
