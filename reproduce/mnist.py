"""Reproduce DGG on MNIST, end to end, and write the discrepancy report.

    python reproduce/mnist.py --variant code|paper [--epochs 300] [--data DIR]
        [--weights PATH] [--neighbors PATH] [--out DIR] [--seed 0] [--subset N]
        [--set NAME=VALUE ...] [--resume] [--audit-only]

Pipeline: load MNIST (train then test, 70000 images), the autoencoder weights
(our .h5, VaDE's Keras .h5 or DGG's .out folder; the log-variance head, the
classifier and the GMM may be absent) and the neighbour table; GMM init from
K-means (K-means and GMM ACC/NMI, with and without pi); classifier pretraining;
the discrepancy audit (report.md / report.json, every quirk Q1..Q12 measured on
the starting weights); DGG training, one progress bar and one summary line per
epoch.

--variant picks the preset (code = the original, quirk for quirk; paper = the
paper-correct switches); --set NAME=VALUE overrides any setting of
dgg_tf.DGGConfig (switches are validated against their choices); --seed sets
config.seed (applied before --set). --subset N takes the first N samples and
rebuilds the neighbour table inside the subset (a Siamese embedding of a subset
is not available, so: exact k-NN on the raw pixels of the subset, then the
configured neighbor_selection from the top table_top), unless --neighbors names
a table with exactly N rows.

Outputs in --out (default runs/mnist-<variant>-<timestamp>/): config.json,
history.csv, model.h5, predictions.npy, curves.png, report.md, report.json, and
checkpoint.npz (after every epoch, atomic; --resume continues from it with the
same numbers as an uninterrupted run). A non-empty --out is refused unless
--resume is given. --audit-only stops after the audit (no training).

Errors a user can cause (missing data, wrong weights, a table for another N, a
bad --set, a diverging loss) end with exit code 2 and one message on stderr.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import json
import os
import shlex
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dgg_tf.config import DGGConfig  # noqa: E402
from dgg_tf.files import write_bytes_atomic  # noqa: E402

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = "dgg_tf-mnist-run-v1"
DEFAULT_WEIGHTS = os.path.join(REPO, "pretrained", "mnist_ae.h5")
DEFAULT_NEIGHBORS = os.path.join(REPO, "pretrained", "mnist_neighbors.npz")
SHARED_MNIST = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mnist"))


class UsageError(ValueError):
    """A command-line mistake (exit code 2)."""


def build_parser():
    p = argparse.ArgumentParser(prog="reproduce/mnist.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=["code", "paper"], default="code",
                   help="config preset: the original code (default) or the paper-correct switches")
    p.add_argument("--epochs", type=int, default=None,
                   help="total DGG epochs (default: the config's, 300 as the original)")
    p.add_argument("--data", default=None,
                   help="MNIST: idx directory, mnist.npz or mnist.pkl.gz (default: "
                        "../shared/data/mnist if present, else the Keras cache)")
    p.add_argument("--weights", default=None,
                   help=f"autoencoder weights (default {os.path.relpath(DEFAULT_WEIGHTS)})")
    p.add_argument("--neighbors", default=None,
                   help=f"neighbour table .npz (default {os.path.relpath(DEFAULT_NEIGHBORS)}, or "
                        "its _nearest variant with --set neighbor_selection=nearest)")
    p.add_argument("--out", default=None, help="run directory (default runs/mnist-<variant>-<timestamp>)")
    p.add_argument("--seed", type=int, default=0, help="config.seed (shuffling, noise, f2 init)")
    p.add_argument("--subset", type=int, default=None, help="use the first N samples")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a config value (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--audit-only", action="store_true", help="stop after the discrepancy audit")
    p.add_argument("--audit-batches", type=int, default=10,
                   help="batches of batch_size x (1 + num_neighbors) rows for the audit (default 10)")
    p.add_argument("--audit-classifier-epochs", type=int, default=None,
                   help="epochs of the audit's classifier pretraining with the other loss (Q5; "
                        "default: classifier_epochs)")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    return p


def main(argv=None, hooks=None):
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        make_config(args)              # fail fast on a bad --set, before TensorFlow loads
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from dgg_tf.training import TrainingError
    try:
        return run(args, hooks=hooks)
    except (ValueError, OSError, TrainingError) as e:   # DataError, WeightsError, TableError, config
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; continue with the same command plus --resume --out RUN_DIR",
              file=sys.stderr)
        return 130


# ============================================================================
def make_config(args):
    if args.epochs is not None and args.epochs < 0:
        raise UsageError(f"--epochs must be non-negative, got {args.epochs}")
    if args.subset is not None and args.subset < 1:
        raise UsageError(f"--subset must be positive, got {args.subset}")
    if args.audit_batches < 1:
        raise UsageError(f"--audit-batches must be positive, got {args.audit_batches}")
    config = DGGConfig.preset(args.variant, seed=args.seed).with_assignments(args.set)
    if args.epochs is not None:
        config = config.replace(epochs=args.epochs)
    return config


def _fingerprint(*arrays):
    import numpy as np
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _nearest_path(path):
    stem, ext = os.path.splitext(path)
    return f"{stem}_nearest{ext or '.npz'}"


def _random_path(path):
    stem, ext = os.path.splitext(path)
    return (stem[:-len("_nearest")] + ext) if stem.endswith("_nearest") else None


def load_weights(path, config):
    """Autoencoder (or full) weights; the encoder and decoder must all be there."""
    from dgg_tf.weights import WeightsError, autoencoder_layers, load_any
    params, provenance = load_any(path, config)
    needed = [f"{layer}/{p}" for layer in autoencoder_layers(config) for p in ("W", "b")]
    missing = [n for n in needed if n not in params]
    if missing:
        raise WeightsError(f"weights: {path} lacks {', '.join(missing)}; DGG starts from a full "
                           "autoencoder (encoder1..4 and decoder1..4)")
    return params, provenance


def _weights_info(path, provenance):
    keep = ("source", "schedule", "stage", "command", "epochs", "metrics", "date", "format")
    return {"path": os.path.abspath(path), **{k: provenance[k] for k in keep if k in provenance}}


def get_table(args, config, x, y):
    """The neighbour table in use, other-mode tables for Q1, and a description."""
    import numpy as np

    from dgg_tf.siamese import load_table
    n = len(x)
    explicit = args.neighbors
    rebuild = args.subset is not None
    if rebuild and explicit and os.path.exists(explicit):
        try:
            with np.load(explicit, allow_pickle=False) as d:
                rebuild = not ("table" in d.files and len(d["table"]) == n)
        except Exception:
            rebuild = False          # let load_table report what is wrong with the file
    if rebuild:
        from dgg_tf.graph import knn
        from dgg_tf.siamese import neighbor_table
        if config.table_top >= n:
            raise UsageError(f"--subset {n}: rebuilding neighbours needs more than table_top = "
                             f"{config.table_top} samples; use a larger subset or --set table_top=...")
        t = time.time()
        top = knn(x, config.table_top)
        tables = {mode: neighbor_table(None, config, seed=config.seed, knn_indices=top, mode=mode)
                  for mode in ("random_top100", "nearest")}
        note = (f"rebuilt for the subset of {n}: exact {config.table_top}-NN on the RAW PIXELS "
                "of the subset (the Siamese embedding of a subset is not available), then "
                f"neighbor_selection={config.neighbor_selection} from the top {config.table_top} "
                f"(seed {config.seed}); {time.time() - t:.1f} s")
        print(f"neighbours: {note}", flush=True)
        return tables[config.neighbor_selection], tables, None, {"source": "rebuilt", "note": note,
                                                                 "path": None}
    if explicit:
        path = explicit
    else:
        path = DEFAULT_NEIGHBORS if config.neighbor_selection == "random_top100" \
            else _nearest_path(DEFAULT_NEIGHBORS)
    if not os.path.exists(path):
        raise UsageError(f"neighbour table {path} does not exist; build it with "
                         "reproduce/siamese_mnist.py, pass --neighbors PATH, or use --subset N "
                         "to rebuild neighbours inside a subset")
    table, settings = load_table(path, n_samples=n)
    if table.shape[1] < config.num_neighbors + 1:
        raise UsageError(f"neighbour table {path} has {table.shape[1]} columns; num_neighbors="
                         f"{config.num_neighbors} needs {config.num_neighbors + 1}")
    selection = settings.get("neighbor_selection")
    if selection is not None and selection != config.neighbor_selection:
        raise UsageError(f"neighbour table {path} was built with neighbor_selection={selection} "
                         f"but the config says {config.neighbor_selection}; pass the matching "
                         f"table or --set neighbor_selection={selection}")
    tables = {config.neighbor_selection: table}
    sibling = _nearest_path(path) if config.neighbor_selection == "random_top100" else _random_path(path)
    if sibling and os.path.exists(sibling):
        try:
            other, _ = load_table(sibling, n_samples=n)
            tables["nearest" if config.neighbor_selection == "random_top100" else "random_top100"] = other
        except ValueError as e:
            print(f"note: ignoring {sibling} for Q1: {e}", flush=True)
    stored = settings.get("purity") if isinstance(settings.get("purity"), dict) else None
    info = {"source": "file", "path": os.path.abspath(path),
            "settings": {k: settings[k] for k in ("format", "neighbor_selection", "table_top",
                                                  "table_columns", "seed", "date", "purity")
                         if k in settings},
            "note": f"loaded {path} ({table.shape[0]} x {table.shape[1]})"}
    print(f"neighbours: {info['note']}", flush=True)
    return np.asarray(table), tables, stored, info


# ============================================================================
def save_checkpoint(path, net, trainer, meta, kmeans_labels):
    """Weights + trainer.state() + the init/classifier/audit results, atomically."""
    import numpy as np

    from dgg_tf.report import clean
    from dgg_tf.weights import get_params
    state = trainer.state()
    arrays = {f"param/{k}": v for k, v in get_params(net).items()}
    for i, value in enumerate(state["optimizer"]):
        arrays[f"opt/{i:03d}"] = np.asarray(value)
    arrays["kmeans_labels"] = np.asarray(kmeans_labels)
    full = {**meta, "format": CHECKPOINT_FORMAT, "epoch": state["epoch"],
            "history": state["history"], "rng": state["rng"],
            "n_optimizer_arrays": len(state["optimizer"])}
    arrays["meta"] = np.array(json.dumps(clean(full)))
    write_bytes_atomic(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path):
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            params = {k[len("param/"):]: d[k] for k in d.files if k.startswith("param/")}
            optimizer = [d[f"opt/{i:03d}"] for i in range(int(meta["n_optimizer_arrays"]))]
            kmeans_labels = d["kmeans_labels"]
    except Exception as e:
        raise ValueError(f"checkpoint {path} cannot be read ({e}); remove it to start over") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint of reproduce/mnist.py")
    return params, optimizer, kmeans_labels, meta


def _check_resume(meta, config, fingerprints, path):
    mine, theirs = config.to_dict(), dict(meta.get("config") or {})
    mine.pop("epochs", None)
    theirs.pop("epochs", None)
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if diff:
        show = ", ".join(f"{k}={theirs.get(k)!r} (now {mine.get(k)!r})" for k in diff[:6])
        raise UsageError(f"--resume: checkpoint {path} was made with another configuration: "
                         f"{show}; rerun with the original settings or a new --out")
    for key, value in fingerprints.items():
        if meta.get(key) != value:
            raise UsageError(f"--resume: checkpoint {path} was made with different {key.replace('_', ' ')}"
                             f" ({meta.get(key)} vs {value}); rerun with the original inputs")


def _write_json(path, obj):
    from dgg_tf.report import _atomic_write, clean
    _atomic_write(path, json.dumps(clean(obj), indent=1, allow_nan=False) + "\n")


# ============================================================================
def run(args, x=None, y=None, hooks=None):
    """The whole command; ``x``, ``y`` replace loading MNIST (tests). ``hooks``:
    {"after_epoch": fn(epoch)} called after each epoch's checkpoint (tests)."""
    t_start = time.time()
    hooks = hooks or {}
    config = make_config(args)
    if args.resume and not args.out:
        raise UsageError("--resume needs --out RUN_DIR (the run to continue)")
    if args.resume and args.audit_only:
        raise UsageError("--resume and --audit-only do not go together")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join("runs", f"mnist-{args.variant}{'-audit' if args.audit_only else ''}-{stamp}")
    if os.path.isdir(out) and os.listdir(out) and not args.resume:
        raise UsageError(f"output directory {out} is not empty; choose a new --out, or pass "
                         "--resume to continue the run in it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} exists and is not a directory")
    weights_path = args.weights or DEFAULT_WEIGHTS
    if not os.path.exists(weights_path):
        raise UsageError(f"weights {weights_path} do not exist; pass --weights (our .h5, VaDE's "
                         "ae_mnist_weights.h5 or DGG's pretrained_weight/ folder) or create them "
                         "with reproduce/pretrain_mnist.py")

    import keras
    import numpy as np

    from dgg_tf import report as rep
    from dgg_tf.data import load_mnist
    from dgg_tf.metrics import cluster_acc, nmi
    from dgg_tf.models import DGGNetwork
    from dgg_tf.training import DGGTrainer, encode, init_gmm, predict, pretrain_classifier
    from dgg_tf.weights import get_params, library_versions, save_weights_h5, set_params

    # ---- data --------------------------------------------------------------------
    data_path = args.data if args.data is not None else (SHARED_MNIST if os.path.isdir(SHARED_MNIST) else None)
    if x is None:
        x, y = load_mnist(data_path)
        data_desc = os.path.abspath(data_path) if data_path else "Keras cache / keras.datasets.mnist"
    else:
        x, y = np.asarray(x, np.float32), (None if y is None else np.asarray(y))
        data_desc = "arrays passed to run()"
    if args.subset is not None:
        if args.subset > len(x):
            raise UsageError(f"--subset {args.subset} exceeds the {len(x)} samples")
        x, y = x[:args.subset], (None if y is None else y[:args.subset])
    if x.ndim != 2 or x.shape[1] != config.input_dim:
        raise UsageError(f"data has shape {x.shape}; the config expects [N, {config.input_dim}]")
    print(f"data: {len(x)} images from {data_desc}" + (f" (first {args.subset})" if args.subset else ""),
          flush=True)

    # ---- weights, table ----------------------------------------------------------------
    params, provenance = load_weights(weights_path, config)
    table, tables, stored_purity, table_info = get_table(args, config, x, y)
    fingerprints = {"data_fingerprint": _fingerprint(x), "table_fingerprint": _fingerprint(table)}

    os.makedirs(out, exist_ok=True)
    for stale in glob.glob(os.path.join(out, "*.tmp-*")):
        os.remove(stale)          # half-written files of a killed run
    ckpt_path = os.path.join(out, CHECKPOINT)
    argv = getattr(args, "argv", None)
    command = ("python reproduce/mnist.py " + shlex.join(argv)) if argv is not None \
        else f"run({vars(args)})"
    import matplotlib
    versions = {**library_versions(), "matplotlib": matplotlib.__version__}
    run_info = {
        "variant": args.variant, "seed": config.seed, "config": config.to_dict(),
        "epochs": config.epochs, "audit_only": bool(args.audit_only), "command": command,
        "argv": vars(args), "cwd": os.getcwd(), "library_versions": versions,
        "paths": {"data": data_desc, "weights": os.path.abspath(weights_path),
                  "neighbors": table_info.get("path"), "out": os.path.abspath(out)},
        "subset": args.subset, "n_samples": int(len(x)), "neighbors": table_info,
        "weights_provenance": _weights_info(weights_path, provenance), **fingerprints,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }

    keras.utils.set_random_seed(config.seed)
    net = DGGNetwork(config)
    assigned = set_params(net, params, partial=True, source=f"weights: {weights_path}")
    kept = sorted({n.split("/")[0] for n in get_params(net)} - {n.split("/")[0] for n in assigned})
    print(f"weights: {weights_path}: loaded {len(assigned)} arrays"
          + (f"; {', '.join(kept)} keep their initialisation" if kept else ""), flush=True)
    trainer = DGGTrainer(net, config)
    if not args.audit_only:
        trainer.check_inputs(x, table, y)     # e.g. Q7's last-batch error, before the long part

    resumed = None
    if args.resume and os.path.exists(ckpt_path):
        ck_params, optimizer, kmeans_labels, meta = load_checkpoint(ckpt_path)
        _check_resume(meta, config, fingerprints, ckpt_path)
        set_params(net, ck_params, source=f"checkpoint {ckpt_path}")
        trainer.restore({"epoch": meta["epoch"], "history": meta["history"], "rng": meta["rng"],
                         "optimizer": optimizer})
        init_summary, cls_hist, audit = meta["init"], meta["classifier_history"], meta["audit"]
        resumed = meta["epoch"]
        wall_before = float(meta.get("wall_seconds", 0.0))
        print(f"resuming {out} after epoch {resumed} ({len(trainer.history)} epochs in the history)",
              flush=True)
        if resumed > config.epochs:
            print(f"note: the run already has {resumed} epochs, more than --epochs {config.epochs}; "
                  "nothing to train", flush=True)
        run_info_old = run_info
        if os.path.exists(os.path.join(out, "config.json")):
            with open(os.path.join(out, "config.json")) as f:
                run_info_old = json.load(f)
        run_info = {**run_info_old, "resumed": run_info_old.get("resumed", []) + [
            {"at": run_info["started"], "from_epoch": resumed, "command": command,
             "epochs": config.epochs, "library_versions": versions}], "epochs": config.epochs}
        run_info["config"]["epochs"] = config.epochs
    else:
        if args.resume:
            print(f"--resume: no checkpoint in {out} yet; starting from the beginning", flush=True)
        wall_before = 0.0
        # ---- GMM init ------------------------------------------------------------------
        init = init_gmm(net, x, y, config, verbose=0)
        kmeans_labels = init["kmeans_labels"]
        init_summary = {k: v for k, v in init.items() if k != "kmeans_labels"}
        if y is not None:
            print(f"GMM init: K-means(n_init={config.kmeans_n_init}) ACC={init['kmeans_acc']:.4f} "
                  f"NMI={init['kmeans_nmi']:.4f}; GMM without pi (code, Q3) ACC="
                  f"{init['gmm_no_pi_acc']:.4f} NMI={init['gmm_no_pi_nmi']:.4f}; with pi ACC="
                  f"{init['gmm_with_pi_acc']:.4f} NMI={init['gmm_with_pi_nmi']:.4f}", flush=True)
        # ---- classifier pretraining --------------------------------------------------
        x_mean = encode(net, x)
        cls_init = {k: v for k, v in get_params(net).items() if k.startswith("classifier/")}
        print(f"classifier pretraining: {config.classifier_epochs} epochs, loss "
              f"{config.classifier_pretrain_loss}", flush=True)
        cls_hist = pretrain_classifier(net, x_mean, kmeans_labels, config, y, seed=config.seed,
                                       verbose=1 if args.verbose else 0)
        # ---- the discrepancy audit -----------------------------------------------------
        print(f"audit: {args.audit_batches} batches of {config.batch_size} x "
              f"{config.num_neighbors + 1} rows", flush=True)
        audit = rep.audit(net, x, table, y, config, n_batches=args.audit_batches, seed=config.seed,
                          tables=tables, stored_purity=stored_purity, kmeans_labels=kmeans_labels,
                          classifier_init=cls_init, classifier_epochs=args.audit_classifier_epochs,
                          classifier_histories={config.classifier_pretrain_loss: cls_hist},
                          weights_info=run_info["weights_provenance"], verbose=args.verbose > 1)
        if audit["setup"]["n_batches"] < 10:
            print(f"note: the audit used {audit['setup']['n_batches']} batches (fewer than 10)",
                  flush=True)
        run_info["audit_seconds"] = audit["setup"]["seconds"]
    _write_json(os.path.join(out, "config.json"), run_info)

    if args.audit_only:
        rep.write_report(out, audit)
        print(f"audit written to {os.path.join(out, 'report.md')} and report.json "
              f"({time.time() - t_start:.0f} s)", flush=True)
        return 0

    meta = {"config": config.to_dict(), "variant": args.variant, **fingerprints,
            "init": init_summary, "classifier_history": cls_hist, "audit": audit}
    run_name = os.path.basename(os.path.normpath(out))

    def this_run():
        return [{"name": run_name, "variant": args.variant, "history": trainer.history}]

    def checkpoint():
        meta["wall_seconds"] = wall_before + time.time() - t_start
        save_checkpoint(ckpt_path, net, trainer, meta, kmeans_labels)

    if resumed is None:
        checkpoint()                       # epoch 0: init, classifier and audit are kept
        rep.write_report(out, audit)

    def on_epoch(tr, record):
        checkpoint()
        rep.write_history_csv(os.path.join(out, "history.csv"), tr.history)
        rep.plot_curves(os.path.join(out, "curves.png"), this_run())
        if hooks.get("after_epoch"):
            hooks["after_epoch"](tr.epoch)

    if trainer.history:   # a resumed run: the files agree with the checkpoint again
        rep.write_history_csv(os.path.join(out, "history.csv"), trainer.history)
    print(f"DGG training: epochs {trainer.epoch + 1}..{config.epochs} ({args.variant} variant), "
          f"out {out}", flush=True)
    trainer.fit(x, table, y, epochs=config.epochs, verbose=args.verbose, on_epoch=on_epoch)

    # ---- final outputs --------------------------------------------------------------------
    wall = wall_before + time.time() - t_start
    final = trainer.history[-1] if trainer.history else {}
    save_weights_h5(os.path.join(out, "model.h5"), get_params(net), {
        "source": "reproduce/mnist.py", "variant": args.variant, "config": config.to_dict(),
        "epochs": trainer.epoch, "command": command, "seed": config.seed,
        "metrics": {k: final.get(k) for k in ("full_acc", "full_nmi", "running_acc", "running_nmi")},
        "init_weights": os.path.abspath(weights_path)})
    pred = predict(net, x)
    write_bytes_atomic(os.path.join(out, "predictions.npy"), lambda f: np.save(f, pred.astype(np.int64)))
    rep.write_history_csv(os.path.join(out, "history.csv"), trainer.history)
    rep.plot_curves(os.path.join(out, "curves.png"), this_run())
    rep.write_report(out, audit, this_run())
    run_info["finished"] = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                            "epochs": trainer.epoch, "wall_seconds": round(wall, 1)}
    if y is not None:
        run_info["finished"].update(acc=cluster_acc(y, pred), nmi_max=nmi(y, pred, "max"),
                                    nmi_arithmetic=nmi(y, pred))
    _write_json(os.path.join(out, "config.json"), run_info)
    checkpoint()
    msg = f"done: {trainer.epoch} epochs in {wall:.0f} s"
    if y is not None:
        msg += f"; ACC={run_info['finished']['acc']:.4f} NMI={run_info['finished']['nmi_max']:.4f}"
    print(f"{msg}; outputs in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
