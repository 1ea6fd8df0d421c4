"""``reproduce/digits.py`` from two checkouts, side by side: wall time per seed and the
DGG ACC each gets, so that a change to the estimator's path is measured, not guessed.

    python benchmarks/digits_time.py BEFORE_REPO AFTER_REPO [--seeds 0 1] [--repeats 3]
        [--config reproduce/configs/digits.json]

Each checkout runs the script in a fresh process with its own ``dgg_tf`` first on
``PYTHONPATH`` (the package each process imported is printed). The runs alternate,
before then after, ``--repeats`` times, so that a machine whose speed drifts slows
both alike. Prints each run's per-seed seconds (the estimator's fit and the two
K-means baselines, as ``runs.json`` records them), then per checkout the median over
repeats and the ACC of every seed, which must agree between the two when the change
keeps the numerics. Run it on an otherwise idle machine, and state the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile


def run_digits(repo, seeds, config, out):
    """One ``reproduce/digits.py`` process of ``repo``: {seed: (seconds, dgg ACC)}."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(repo), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, os.path.join(repo, "reproduce", "digits.py"), "--seeds",
           *map(str, seeds), "--out", out] + (["--config", config] if config else [])
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "runs.json")) as f:
        runs = json.load(f)["runs"]
    return {r["seed"]: (r["seconds"], r["dgg"][0]) for r in runs}


def package_of(repo):
    env = {**os.environ, "PYTHONPATH": os.path.abspath(repo)}
    # run from / : with ``-c`` the working directory comes first on sys.path, ahead of
    # PYTHONPATH, and would name the package of wherever this script was started
    return subprocess.run([sys.executable, "-c", "import dgg_tf; print(dgg_tf.__file__)"],
                          env=env, capture_output=True, text=True, check=True,
                          cwd="/").stdout.strip()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", help="the checkout before the change")
    p.add_argument("after", help="the checkout after the change")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--config", default=None,
                   help="a digits config (default: each checkout's own "
                        "reproduce/configs/digits.json)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    for repo in (args.before, args.after):
        if not os.path.isfile(os.path.join(repo, "reproduce", "digits.py")):
            p.error(f"{repo} has no reproduce/digits.py")
        print(f"{repo}: imports {package_of(repo)}", flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs", flush=True)
    found = {args.before: [], args.after: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for label, repo in (("before", args.before), ("after", args.after)):
                got = run_digits(repo, args.seeds, args.config, os.path.join(tmp, f"{label}{i}"))
                found[repo].append(got)
                print(f"repeat {i + 1} {label}: " + ", ".join(
                    f"seed {s} {sec:.1f} s ACC {acc:.4f}" for s, (sec, acc) in got.items()),
                    flush=True)
    for label, repo in (("before", args.before), ("after", args.after)):
        runs = found[repo]
        medians = [statistics.median(r[s][0] for r in runs) for s in args.seeds]
        accs = [sorted({round(r[s][1], 6) for r in runs}) for s in args.seeds]
        print(f"{label}: median seconds per seed " + ", ".join(
            f"{s}: {m:.1f}" for s, m in zip(args.seeds, medians))
            + f"; total {sum(medians):.1f} s; DGG ACC per seed "
            + ", ".join(f"{s}: {a}" for s, a in zip(args.seeds, accs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
