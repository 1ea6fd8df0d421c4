"""The DGG step on real data against a float64 run of the original's formula, printed.

    python benchmarks/real_data_parity.py [--paths tensorflow jax ...] [--cases code ...]
        [--steps 5] [--data MNIST_DIR] [--out FILE] [--device-check]

From the real start (shipped autoencoder, GMM init and pretrained f2), real MNIST
batches and seeded noise, each path runs 5 steps (``tests/parity.py``; cases: the code
and paper presets on full MNIST, the code preset on its first 300 images, where the
un-warmed first step saturates decoder outputs): ``net.step`` on TensorFlow and on JAX,
and the original's formula in float64 (the reference) and in float32, the rows in the
original's order and in dgg_tf's, on XLA's and on TensorFlow's kernels (the band).
Prints, per case and path, the distance from float64 after steps 1 and 5 (||p - p64|| /
||p64 - p0|| over all weights) and the weights step 1 moved the other way from float64
(among those float64 moved by at least 0.99 lr). ``--device-check``: the paths a JAX machine without TensorFlow can run.
One process per backend and kind of path; about 2 minutes on 2 CPU cores.
"""
import argparse
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
import parity  # noqa: E402  (tests/parity.py: the paths and the comparison)


def report(case, runs):
    table, band = parity.summary(runs, lr=0.002)
    lines = [f"{case}: distance from float64 (step {', step '.join(map(str, parity.SAVED))})"
             f"; wrong-way weights in step 1"]
    for path, row in table.items():
        steps = "  ".join(f"{row[f'step {s}']:.2e}" for s in parity.SAVED)
        count, names = row["wrong-way"]
        lines.append(f"  {path:17s} {steps}  wrong-way {count}{' ' + ', '.join(names) if names else ''}")
    if band is None:
        lines.append(f"  {'band':17s} none: no float32 reference path among --paths")
    else:
        lines.append(f"  {'band':17s} " + "  ".join(f"{band[f'step {s}']:.2e}"
                                                    for s in parity.SAVED)
                     + "  (the float32 reference paths' largest)")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paths", nargs="+", default=list(parity.PATHS), choices=parity.PATHS)
    p.add_argument("--cases", nargs="+", default=list(parity.CASES), choices=list(parity.CASES),
                   help="a preset on a data set (default: all)")
    p.add_argument("--steps", type=int, default=max(parity.SAVED),
                   help=f"steps per path (at least {max(parity.SAVED)})")
    p.add_argument("--data", help="MNIST folder (default: $DGG_MNIST, else ../shared/data/mnist)")
    p.add_argument("--out", help="also write the report to this file")
    p.add_argument("--device-check", action="store_true",
                   help="the paths without TensorFlow (a JAX machine)")
    args = p.parse_args()
    if args.steps < max(parity.SAVED):
        p.error(f"--steps must be at least {max(parity.SAVED)}")
    if args.data:
        os.environ["DGG_MNIST"] = os.path.abspath(args.data)
    paths = [x for x in args.paths
             if not (args.device_check and parity._backend_of(x) == "tensorflow")]
    if "float64" not in paths:
        paths.append("float64")
    lines = [f"real-data parity: {args.steps} steps, paths {', '.join(paths)}; "
             f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
             f"JAX_DEFAULT_MATMUL_PRECISION={os.environ.get('JAX_DEFAULT_MATMUL_PRECISION', '')}"]
    print(lines[0], flush=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        runs = parity.run_paths(paths, args.cases, args.steps, tmp)
        for case in args.cases:
            block = report(case, runs[case])
            print("\n".join(block), flush=True)
            lines += block
    lines.append(f"wall {time.time() - t0:.0f} s")
    print(lines[-1])
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
