"""Prototype measurement: C independent DGG "cells" trained in ONE compiled JAX program.

    python benchmarks/cells_probe.py [--cells 1 4 16 32] [--precision float32 mixed_bfloat16]
        [--scan 50] [--steps 30] [--budget SECONDS] [--small] [--check]
    python benchmarks/cells_probe.py --switch 4 [--steps 10]   # split or select
    python benchmarks/cells_probe.py --engine 1 4              # train_cells' cost

A cell is a copy of the DGG network (``DGGNetwork`` after ``compile_dgg``) with its own
weights, optimiser state, step metrics, batches and noise. Instead of C processes, the
C cells' states are stacked along a leading cell axis and one pure step is mapped over
it with ``jax.vmap``, then jit-compiled. The pure step is the network's own
``train_step(state, data)`` (``backend.Trainer``: ``train_on`` in a Keras StatelessScope,
``jax.value_and_grad`` and ``optimizer.stateless_apply``), so each cell computes what
``net.step`` computes: gradient, PyTorch-style Adam update, the post-step evaluation and
the step metrics. Before it, each cell assembles its own batch in the same program, from
its own PRNG key (part of the cell's state, split every step): B samples x (1 + Nn) rows
gathered at random from a shared pool of synthetic rows in [0, 1] (as ``BatchFeed`` gathers
from the data on the device), the graph weights (``similarity_weights_ops``) and the
reparameterisation noise eps. Only throughput matters here: the data are random.

Per configuration (cells C x precision x mode) it prints one ``RESULT`` line as soon as
measured: cell-steps per second and ms per cell-step, with
  mode ``step``: one jitted call per step (state donated), median of ``--steps`` calls each
                 waited for (``block_until_ready``), and the same calls pipelined (``pipe``:
                 ``--steps`` calls issued back to back, one wait at the end);
  mode ``scan``: ``jax.lax.scan`` over ``--scan`` K steps inside one call, median over
                 ceil(--steps / K) calls (at least 3), divided by K.
Compile time (trace + lower, XLA compile) is reported apart. Precision ``float32`` runs the
matrix products at JAX's ``highest`` (dgg_tf's default); ``mixed_bfloat16`` is Keras'
policy on the network's layers (``DGGConfig.precision``). A configuration that fails (e.g.
out of memory) prints an ``ERROR`` line and the rest go on; ``--budget`` stops starting new
configurations when their estimated time would exceed it (a ``SKIP`` line each; the first
configuration always runs, so that every run measures something). A summary
table ends the output. Configurations run in the order cells x precision x mode, cells
in the order given: put the counts that matter most first.

``--check`` first runs the correctness self-check on tiny float32 cells (C = 2, 3 steps):
cell i of the vmapped program equals cell i stepped alone by the unvmapped jitted step,
and so does cell i of the scanned program; cell 0 also equals ``net.step`` fed the same
batches. Tolerance: for every state array (weights, Adam moments, metrics), max |a - b| <=
TOL * max |b| (TOL = 1e-5). Exit status 1 if the vmap or scan check fails.

``--switch C`` (alone): how to hold a structural switch, ``prior`` code/paper, over C
cells at a small but non-trivial width (``MEDIUM``): two programs of C/2 (split) against
one program of C computing both priors and selecting per cell (select), ms per
cell-step of each (``SWITCH`` line). ``--engine C ...`` (alone): ``stages.cells.train_cells``
itself, ms per cell-step for each C (its epochs' seconds: the program, the host's
batches, the bookkeeping) against one cell through ``fit_dgg`` (``ENGINE`` lines).

No TensorFlow: KERAS_BACKEND is set to jax before Keras is imported, and the last line says
whether TensorFlow was imported. On a GPU machine without Keras, install it from the wheels
of benchmarks/device_prepare.sh first (pip install --no-index --no-deps --target DIR
.whl/*.whl; PYTHONPATH=DIR:.), as benchmarks/device_check.sh does.
"""
import argparse
import gc
import math
import os
import platform
import sys
import time
import warnings

os.environ["KERAS_BACKEND"] = "jax"   # before Keras is first imported: this probe is JAX only
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

TOL = 1e-5            # relative, per state array: max|a - b| <= TOL * max|b|
POOL_ROWS = 10_000    # rows of the shared synthetic data pool at full shapes
SMALL = dict(input_dim=20, encoder_dims=(16, 16, 32), latent_dim=4, n_clusters=3,
             batch_size=8, num_neighbors=3)
POOL_ROWS_SMALL = 64

warnings.filterwarnings("ignore", message=".*[Dd]onat.*")


def say(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- the cells' program
def make_config(precision, small):
    from dgg_tf.core.config import DGGConfig
    return DGGConfig(precision=precision, **(SMALL if small else {}))


def build_network(cfg):
    """A network compiled the dgg_tf way (JAX backend: the Trainer step, TorchAdam)."""
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.stages.dgg import compile_dgg
    return compile_dgg(DGGNetwork(cfg))


_NETWORKS = {}


def network(precision, small):
    """(net, cfg, pool) for a precision and size, built once per process (the check's
    network is reused by the timing: only its weights' values differ)."""
    if (precision, small) not in _NETWORKS:
        cfg = make_config(precision, small)
        pool = data_pool(cfg, POOL_ROWS_SMALL if small else POOL_ROWS)
        _NETWORKS[precision, small] = (build_network(cfg), cfg, pool)
    return _NETWORKS[precision, small]


def state_of(net):
    """Keras' JAX training state, in ``backend.Trainer``'s order: (trainable,
    non-trainable, optimiser, metrics variable values)."""
    return tuple([v.value for v in vs] for vs in (
        net.trainable_variables, net.non_trainable_variables,
        net.optimizer.variables, net.metrics_variables))


def batch_maker(cfg):
    """``assemble(key, pool) -> (x_nbrs, w, eps)``: one cell's batch, as the real batches
    are shaped: B samples, each with itself + Nn neighbour rows of the pool (random rows
    here, not a neighbour table), the graph weights and the noise."""
    from dgg_tf.numerics.graph import similarity_weights_ops
    b, nn, m = cfg.batch_size, cfg.num_neighbors + 1, cfg.latent_dim

    def assemble(key, pool):
        k_rows, k_eps = jax.random.split(key)
        rows = jax.random.randint(k_rows, (b, nn), 0, pool.shape[0])
        x_nbrs = jnp.take(pool, rows, axis=0)                       # [B, Nn, D]
        w = similarity_weights_ops(x_nbrs, cfg.sigma, cfg.similarity, cfg.sigma_mode)
        eps = jax.random.normal(k_eps, (b, nn, m), jnp.float32)
        return x_nbrs, w, eps
    return assemble


def step_fn(net, cfg):
    """The pure step of ONE cell: ``step((state, key), pool) -> ((state, key), loss)``,
    the network's own ``train_step`` on a batch assembled from the cell's key."""
    assemble = batch_maker(cfg)

    def step(cell, pool):
        state, key = cell
        key, sub = jax.random.split(key)
        logs, state = net.train_step(state, assemble(sub, pool))
        return (state, key), logs["loss"]
    return step


def cells_step(step):
    """The step of C stacked cells (leading axis), the pool shared."""
    return jax.vmap(step, in_axes=(0, None))


def cells_scan(step, k):
    """K steps of C stacked cells in one call; returns the last step's losses [C]."""
    many = cells_step(step)

    def run(cells, pool):
        def body(c, _):
            return many(c, pool)
        cells, losses = jax.lax.scan(body, cells, None, length=k)
        return cells, losses[-1]
    return run


def stack_cells(net, c, seed=0):
    """C cells from the network's state: cell 0 is the network as it is; cell i > 0 has
    every trainable array perturbed by 0.1 x its std x N(0, 1) (its own draw), so no two
    cells compute the same thing. Optimiser state and metrics are copies (zeros, step 0).
    Each cell gets its own PRNG key for its batches and noise. Built in NumPy (no
    compilation), then put on the device."""
    rng = np.random.default_rng(seed)
    trainable, *rest = state_of(net)

    def perturbed(v):
        v = np.asarray(v)
        out = np.repeat(v[None], c, axis=0)
        if c > 1:
            scale = 0.1 * float(np.std(v.astype(np.float32)))
            noise = rng.standard_normal((c - 1, *v.shape), dtype=np.float32)
            out[1:] = (v.astype(np.float32) + scale * noise).astype(v.dtype)
        return jnp.asarray(out)
    stacked_trainable = [perturbed(v) for v in trainable]
    tile = lambda x: jnp.asarray(np.repeat(np.asarray(x)[None], c, axis=0))  # noqa: E731
    stacked_rest = jax.tree_util.tree_map(tile, rest)
    keys = jnp.asarray(np.stack([np.asarray(jax.random.PRNGKey(1000 * (seed + 1) + i))
                                 for i in range(c)]))
    return (stacked_trainable, *stacked_rest), keys


def data_pool(cfg, rows, seed=0):
    return jnp.asarray(np.random.default_rng(seed).random((rows, cfg.input_dim), np.float32))


def cell(cells, i):
    return jax.tree_util.tree_map(lambda x: x[i], cells)


# ---------------------------------------------------------------- the check
def max_relative(a, b):
    """max over arrays of max|a - b| / max|b| (float arrays), and max|a - b|."""
    rel, absolute = 0.0, 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        if not np.issubdtype(y.dtype, np.floating) and y.dtype.name != "bfloat16":
            if not np.array_equal(x, y):
                return math.inf, math.inf
            continue
        x, y = x.astype(np.float64), y.astype(np.float64)
        d = float(np.max(np.abs(x - y))) if x.size else 0.0
        scale = float(np.max(np.abs(y))) if y.size else 0.0
        absolute = max(absolute, d)
        rel = max(rel, d / scale if scale > 0 else (0.0 if d == 0 else math.inf))
    return rel, absolute


def self_check(steps=3, c=2):
    """The correctness self-check (``--check``); returns True if the vmap and scan
    checks pass."""
    net, cfg, pool = network("float32", small=True)
    step = step_fn(net, cfg)
    cells = stack_cells(net, c)
    single = jax.jit(step)
    many = jax.jit(cells_step(step))
    scanned = jax.jit(cells_scan(step, steps))
    alone = []
    for i in range(c):
        s = cell(cells, i)
        for _ in range(steps):
            s, _ = single(s, pool)
        alone.append(s)
    v = cells
    for _ in range(steps):
        v, losses = many(v, pool)
    sc, _ = scanned(cells, pool)
    ok = True
    for name, out in (("vmap", v), ("scan", sc)):
        worst = [max_relative(cell(out, i), alone[i]) for i in range(c)]
        rel = max(w[0] for w in worst)
        absolute = max(w[1] for w in worst)
        good = rel <= TOL
        ok &= good
        say(f"CHECK {name}-vs-alone C={c} steps={steps}: max_rel_diff={rel:.3e} "
            f"max_abs_diff={absolute:.3e} tol={TOL:.0e} (relative, per state array) "
            f"{'PASS' if good else 'FAIL'}")
    different = max_relative(cell(v, 0)[0][0], cell(v, 1)[0][0])[0]
    say(f"CHECK cells differ: cell 0 vs cell 1 trainable weights rel diff {different:.3e} "
        f"({'ok' if different > 1e-3 else 'SUSPICIOUS: the cells are the same'})")
    # cell 0 (the network as built) against net.step fed the same batches
    assemble = jax.jit(batch_maker(cfg))
    key = cells[1][0]
    for _ in range(steps):
        key, sub = jax.random.split(key)
        net.step(assemble(sub, pool))
    rel, absolute = max_relative(state_of(net), alone[0][0])
    say(f"CHECK alone-vs-net.step cell 0 steps={steps}: max_rel_diff={rel:.3e} "
        f"max_abs_diff={absolute:.3e} tol={TOL:.0e} {'PASS' if rel <= TOL else 'DIFFERS'} "
        "(one program with the batch assembly vs net.step's own; informative)")
    return ok


# ---------------------------------------------------------------- split or select
#: A small but non-trivial width for the CPU: MNIST's input, a narrower encoder.
MEDIUM = dict(input_dim=784, encoder_dims=(250, 250, 500), latent_dim=10, n_clusters=10,
              batch_size=50, num_neighbors=10)


def prior_select_step(net, cfg):
    """One cell's step with ``prior`` as per-cell data, ``step(cell, paper, pool)``: both
    priors computed, one chosen by the cell's flag (``cfg.prior`` = "code"; timing only:
    the paper prior's 0 log 0 guard, one more select, is left out)."""
    from dgg_tf.numerics import objective
    step, prior_ops = step_fn(net, cfg), objective.prior_ops

    def cell_step(cell, paper, pool):
        objective.prior_ops = lambda g, w, mode: jnp.where(
            paper, prior_ops(g, w, "paper"), prior_ops(g, w, "code"))
        try:
            return step(cell, pool)
        finally:
            objective.prior_ops = prior_ops
    return cell_step


def median_call(fn, cells, args, reps):
    """Median seconds of ``reps`` calls of a compiled ``fn(cells, *args)`` (after one)."""
    cells, loss = fn(cells, *args)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        cells, loss = fn(cells, *args)
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def switch_split_or_select(c, reps):
    """ms per cell-step of C cells half prior=code, half prior=paper: two programs of
    C/2 (split) against one program of C computing both priors (select), and one
    program of C cells of one prior (what select adds to it)."""
    from dgg_tf.core.config import DGGConfig
    base = DGGConfig(**MEDIUM)
    pool = data_pool(base, 2000)
    split = 0.0
    for prior in ("code", "paper"):
        net = build_network(base.replace(prior=prior))
        split += median_call(jax.jit(cells_step(step_fn(net, net.config))),
                             stack_cells(net, c // 2), (pool,), reps)
    net = build_network(base)
    one = median_call(jax.jit(cells_step(step_fn(net, base))), stack_cells(net, c),
                      (pool,), reps)
    flags = jnp.asarray(np.arange(c) % 2 == 1)
    select = median_call(jax.jit(jax.vmap(prior_select_step(net, base), in_axes=(0, 0, None))),
                         stack_cells(net, c), (flags, pool), reps)
    say(f"SWITCH prior C={c} ({MEDIUM}): split (2 programs of {c // 2}) "
        f"{1e3 * split / c:.3f} ms/cell-step; select (1 program of {c}, both priors) "
        f"{1e3 * select / c:.3f}; one prior only (1 program of {c}) {1e3 * one / c:.3f}")


# ---------------------------------------------------------------- the engine itself
def engine_cost(cells_list, rows=1000, epochs=3):
    """ms per cell-step of ``stages.cells.train_cells`` (its epoch's seconds: the
    program, the batches' assembly on the host, the epoch's bookkeeping) for each C of
    ``cells_list``, against ``fit_dgg`` of one cell (its epoch's seconds), at MEDIUM
    width on synthetic data; the median over epochs 2.. (epoch 1 compiles)."""
    import keras

    from dgg_tf.core.config import DGGConfig
    from dgg_tf.numerics.models import DGGNetwork
    from dgg_tf.numerics.weights import get_params, set_params
    from dgg_tf.stages.cells import train_cells
    from dgg_tf.stages.dgg import compile_dgg, fit_dgg
    cfg = DGGConfig(**MEDIUM, epochs=epochs)
    rng = np.random.default_rng(0)
    x = rng.random((rows, cfg.input_dim)).astype(np.float32)
    table = np.stack([np.arange(rows)] + [rng.permutation(rows) for _ in
                                          range(cfg.num_neighbors)], 1).astype(np.int32)
    steps = -(-rows // cfg.batch_size)
    keras.utils.set_random_seed(0)
    start = get_params(DGGNetwork(cfg))
    net = compile_dgg(DGGNetwork(cfg))
    set_params(net, start)
    alone = np.median([r["seconds"] for r in fit_dgg(net, x, table, verbose=0)[1:]]) / steps
    say(f"ENGINE fit_dgg, one cell: {1e3 * alone:.3f} ms/step ({MEDIUM}, {steps} steps an "
        f"epoch)")
    for c in cells_list:
        got = train_cells(cfg, x, table, [start] * c, [{"seed": i} for i in range(c)])
        per = np.median([r["seconds"] for r in got[0]["history"][1:]]) / (steps * c)
        say(f"ENGINE train_cells C={c}: {1e3 * per:.3f} ms/cell-step, {per / alone:.2f} x "
            f"fit_dgg's step; {c} cells a call cost {c * per / alone:.2f} x one cell's step")


# ---------------------------------------------------------------- timing
def timed_calls(fn, cells, pool, reps, deadline):
    """``reps`` calls, each waited for; stops early (at least 1) past ``deadline``.
    Returns (cells, [seconds per call], the last call's losses)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        cells, loss = fn(cells, pool)
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
        if time.perf_counter() > deadline:
            break
    return cells, times, loss


def measure(precision, mode, c, args, deadline):
    """One configuration; returns its result dict."""
    net, cfg, pool = network(precision, args.small)
    step = step_fn(net, cfg)
    k = args.scan if mode == "scan" else 1
    fn = cells_scan(step, k) if mode == "scan" else cells_step(step)
    t = time.perf_counter()
    cells = stack_cells(net, c)
    jax.block_until_ready(cells)
    t0 = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=0).lower(cells, pool)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    cells, first, _ = timed_calls(compiled, cells, pool, 1 if mode == "scan" else 2, math.inf)
    reps = max(3, -(-args.steps // k)) if mode == "scan" else args.steps
    cells, times, loss = timed_calls(compiled, cells, pool, reps, deadline)
    row = dict(precision=precision, mode=mode, C=c, K=k, reps=len(times), setup_s=t0 - t,
               trace_s=t1 - t0, compile_s=t2 - t1, first_call_s=first[0],
               call_s=float(np.median(times)))
    row["cell_step_s"] = row["call_s"] / (k * c)
    if mode == "step" and time.perf_counter() < deadline:
        t = time.perf_counter()
        for _ in range(args.steps):
            cells, loss = compiled(cells, pool)
        loss.block_until_ready()
        row["pipe_cell_step_s"] = (time.perf_counter() - t) / (args.steps * c)
    losses = np.asarray(loss, np.float64)
    row["loss"] = f"{losses.min():.4g}..{losses.max():.4g}" if np.all(np.isfinite(losses)) \
        else f"NON-FINITE ({int(np.sum(~np.isfinite(losses)))} of {losses.size} cells)"
    row["run_s"] = sum(first) + sum(times)
    del cells, compiled, lowered
    return row


def result_line(r):
    line = (f"RESULT precision={r['precision']} mode={r['mode']} C={r['C']} K={r['K']}: "
            f"{1.0 / r['cell_step_s']:.1f} cell-steps/s, {1e3 * r['cell_step_s']:.3f} ms/cell-step, "
            f"{1e3 * r['call_s']:.2f} ms/call (median of {r['reps']})")
    if "pipe_cell_step_s" in r:
        line += (f"; pipelined {1.0 / r['pipe_cell_step_s']:.1f} cell-steps/s "
                 f"({1e3 * r['pipe_cell_step_s']:.3f} ms)")
    line += (f"; compile {r['trace_s']:.2f} s trace+lower + {r['compile_s']:.2f} s XLA, "
             f"first call {r['first_call_s']:.3f} s; last losses {r['loss']}")
    return line


def estimate(results, precision, mode, c, args):
    """Seconds a configuration should take, from those measured before (None: no basis)."""
    same = [r for r in results if r["mode"] == mode] or results   # another mode's: a guess
    if not same:
        return None
    compile_s = max(r["trace_s"] + r["compile_s"] for r in same)
    near = [r for r in same if r["precision"] == precision] or same
    per_cell_step = max(r["cell_step_s"] for r in near if r["C"] == max(x["C"] for x in near))
    k = args.scan if mode == "scan" else 1
    steps = (max(3, -(-args.steps // k)) + 1) * k if mode == "scan" else 2 * args.steps + 2
    setup_per_cell = max(r["setup_s"] / r["C"] for r in same)
    return compile_s + 1.5 * steps * c * per_cell_step + setup_per_cell * c + 1.0


def describe():
    try:
        _describe()
    except Exception as e:    # noqa: BLE001  (an API of another jax version: say so, go on)
        say(f"describe failed: {type(e).__name__}: {e}")


def _describe():
    import keras

    from dgg_tf.backend import jax_backend   # sets dgg_tf's matmul precision on import
    devices = jax.devices()
    say(f"python {platform.python_version()}, jax {jax.__version__}, keras {keras.__version__} "
        f"(backend {keras.backend.backend()}), numpy {np.__version__}")
    say(f"devices: {devices} (kind: {devices[0].device_kind}, platform {devices[0].platform})")
    say(f"jax_default_matmul_precision={jax.config.jax_default_matmul_precision} "
        f"(dgg_tf's: {jax_backend.MATMUL_PRECISION}), x64={jax.config.jax_enable_x64}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"],
                   choices=["float32", "mixed_bfloat16"])
    p.add_argument("--scan", type=int, default=50, help="K steps per call in mode scan (0: no scan mode)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    p.add_argument("--budget", type=float, default=600.0, help="seconds for the whole run")
    p.add_argument("--small", action="store_true", help="tiny shapes (CPU tests)")
    p.add_argument("--check", action="store_true", help="the correctness self-check first")
    p.add_argument("--switch", type=int, default=0, metavar="C",
                   help="only: prior code/paper over C cells, split against select")
    p.add_argument("--engine", type=int, nargs="*", metavar="C",
                   help="only: train_cells' cost per cell-step for these C, against fit_dgg")
    args = p.parse_args(argv)
    if args.switch or args.engine:
        describe()
        if args.switch:
            switch_split_or_select(args.switch, args.steps)
        if args.engine:
            engine_cost(args.engine)
        return 0
    start = time.perf_counter()
    end = start + args.budget
    say(f"cells_probe: cells {args.cells}, precisions {args.precision}, scan K={args.scan}, "
        f"steps {args.steps}, budget {args.budget:.0f} s, {'small' if args.small else 'full'} shapes")
    describe()
    ok = True
    if args.check:
        t = time.perf_counter()
        ok = self_check()
        say(f"check took {time.perf_counter() - t:.1f} s")

    for precision in args.precision:
        net, cfg, pool = network(precision, args.small)
        policy = net.encoder.hidden[0].dtype_policy.name
        say(f"network {precision}: layer policy {policy}, {net.count_params()} parameters, "
            f"batch {cfg.batch_size} x {cfg.num_neighbors + 1} = "
            f"{cfg.batch_size * (cfg.num_neighbors + 1)} rows of {cfg.input_dim} per cell-step, "
            f"pool {pool.shape[0]} rows, encoder {[cfg.input_dim, *cfg.encoder_dims, cfg.latent_dim]}")
    say("jax_default_matmul_precision after building: "
        f"{getattr(jax.config, 'jax_default_matmul_precision', '?')}")

    modes = ["step"] + (["scan"] if args.scan > 0 else [])
    results, failed = [], set()
    for c in args.cells:
        for precision in args.precision:
            for mode in modes:
                tag = f"precision={precision} mode={mode} C={c}"
                if any(f[0] == precision and f[1] == mode and f[2] <= c for f in failed):
                    say(f"SKIP {tag}: a smaller C failed")
                    continue
                left = end - time.perf_counter()
                guess = estimate(results, precision, mode, c, args)
                if results and (left <= 0 or (guess is not None and guess > left)):
                    say(f"SKIP {tag}: budget (estimated {guess or 0:.1f} s, {max(left, 0):.1f} s left)")
                    continue
                try:
                    row = measure(precision, mode, c, args, end)
                except Exception as e:    # noqa: BLE001  (OOM and the like: report, go on)
                    failed.add((precision, mode, c))
                    say(f"ERROR {tag}: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
                    gc.collect()
                    continue
                finally:
                    gc.collect()
                results.append(row)
                say(result_line(row))

    say("")
    say(f"summary ({jax.devices()[0].device_kind}, jax {jax.__version__}; cell-steps/s, "
        "ms per cell-step; pipe: one call per step issued back to back)")
    say(f"{'precision':>15} {'mode':>5} {'C':>4} {'K':>4} {'cell-steps/s':>13} {'ms/cell-step':>13} "
        f"{'pipe cs/s':>10} {'compile s':>10}")
    for r in results:
        pipe = f"{1.0 / r['pipe_cell_step_s']:.1f}" if "pipe_cell_step_s" in r else "-"
        say(f"{r['precision']:>15} {r['mode']:>5} {r['C']:>4} {r['K']:>4} "
            f"{1.0 / r['cell_step_s']:>13.1f} {1e3 * r['cell_step_s']:>13.3f} {pipe:>10} "
            f"{r['trace_s'] + r['compile_s']:>10.2f}")
    say(f"total {time.perf_counter() - start:.1f} s; tensorflow imported: {'tensorflow' in sys.modules}")
    if not results:
        return 3 if ok else 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
