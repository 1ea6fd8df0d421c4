"""benchmarks/cells_probe.py on tiny shapes: C cells stepped by one vmapped JAX program
equal each cell stepped alone (the self-check), and a throughput line is printed."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "cells_probe.py")


def test_cells_probe_small_check():
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT,
           # CPU compile time halves without LLVM's optimisations; the check compares
           # programs compiled alike, and the throughput of tiny shapes is not asserted
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                         + " --xla_backend_optimization_level=0").strip()}
    # --budget 0: the check and the first configuration always run, the rest are skipped
    # for the budget (each further one cost several seconds of compiling here)
    done = subprocess.run([sys.executable, SCRIPT, "--small", "--check", "--cells", "1", "2",
                           "--steps", "3", "--scan", "3", "--budget", "0",
                           "--precision", "float32"],
                          env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    for name in ("vmap", "scan"):
        line = re.search(rf"^CHECK {name}-vs-alone .*max_rel_diff=(\S+) .*tol=(\S+) .*$",
                         out, re.M)
        assert line, out
        assert float(line.group(1)) <= float(line.group(2)) and line.group(0).endswith("PASS")
    assert re.search(r"^RESULT precision=\S+ mode=step C=1 .*cell-steps/s, [0-9.]+ ms/cell-step",
                     out, re.M), out
    assert re.search(r"^SKIP precision=float32 mode=step C=2: budget", out, re.M), out
    assert "tensorflow imported: False" in out
