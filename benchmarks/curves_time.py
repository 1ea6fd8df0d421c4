"""What drawing a run's curves.png costs, by the epochs it shows: the median seconds of
``report.plot_curves`` (the figure a run draws while it trains; ``RunFiles`` draws it at
most every ``CURVES_EVERY_S`` seconds for this reason), on a history of the shipped
0.3.0 run's first epoch repeated with moving numbers.

    python benchmarks/curves_time.py [--epochs 1 30 300] [--repeats 5]

Run it on an otherwise idle machine; it prints the CPU.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def history(epochs):
    """``epochs`` records shaped as a real run's history.csv."""
    from dgg_tf.core.history import read_history_csv
    first = read_history_csv(os.path.join(ROOT, "tests", "data", "run_v0_3", "history.csv"))[0]
    return [{**first, "epoch": e, "full_acc": 0.5 + 0.4 * e / epochs,
             "running_acc": 0.4 + 0.4 * e / epochs, "loss": first["loss"] / e}
            for e in range(1, epochs + 1)]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, nargs="+", default=[1, 30, 300])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    from dgg_tf.report import plot_curves
    print(f"cpu: {cpu_name()}, {os.cpu_count()} cores; "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "curves.png")
        plot_curves(path, [{"name": "run", "history": history(2)}])     # imports, fonts
        for epochs in args.epochs:
            runs = [{"name": "run", "history": history(epochs), "classifier_acc": 0.76}]
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                plot_curves(path, runs)
                times.append(time.perf_counter() - t)
            print(f"{epochs:4d} epochs: median {statistics.median(times):.3f} s a drawing "
                  f"(min {min(times):.3f}, max {max(times):.3f}, {args.repeats} drawings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
