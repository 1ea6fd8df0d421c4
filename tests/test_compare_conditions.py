"""``python -m dgg_tf.report RUN_A RUN_B`` names every difference that changes what a
comparison means (data size and subset, data fingerprint, epochs, precision, backend,
seed) and warns when the runs saw different data."""
import json

from dgg_tf.cli import report as report_cli
from dgg_tf.core.history import write_history_csv


def _run(root, name, *, n_samples, subset, fingerprint, epochs, precision, backend, seed):
    d = root / name
    d.mkdir()
    hist = [{"epoch": e + 1, "loss": 1.0, "full_acc": 0.5 + 0.1 * e, "full_nmi": 0.4,
             "seconds": 1.0} for e in range(epochs)]
    write_history_csv(d / "history.csv", hist)
    record = {"variant": "code", "data": "/data/mnist", "subset": subset, "seed": seed,
              "config": {"epochs": epochs, "precision": precision, "seed": seed,
                         "prior": "code"},
              "epochs": epochs, "library_versions": {"backend": backend},
              "n_samples": n_samples, "data_fingerprint": fingerprint,
              "table_fingerprint": "t" + fingerprint, "finished": {"epochs": epochs}}
    (d / "config.json").write_text(json.dumps(record))
    return d


def test_unlike_runs_list_every_difference_and_warn(tmp_path, capsys):
    full = _run(tmp_path, "full", n_samples=70000, subset=None, fingerprint="aaaa",
                epochs=2, precision="float32", backend="tensorflow", seed=0)
    part = _run(tmp_path, "part", n_samples=5000, subset=5000, fingerprint="bbbb",
                epochs=3, precision="mixed_bfloat16", backend="jax", seed=1)
    out = tmp_path / "cmp"
    assert report_cli.main([str(full), str(part), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    comp = json.loads((out / "report.json").read_text())["comparison"]
    assert comp["conditions"]["images"] == {"full": 70000, "part": 5000}
    assert comp["conditions"]["subset"] == {"full": "all", "part": 5000}
    assert comp["conditions"]["backend"] == {"full": "tensorflow", "part": "jax"}
    assert set(comp["differing_conditions"]) == {
        "images", "subset", "data fingerprint", "neighbour table", "epochs trained",
        "configured epochs", "precision", "backend", "seed"}
    warning = comp["warnings"][0]
    assert warning.startswith("DIFFERENT DATA (images, subset, data fingerprint differ)")
    assert "full: 70000 images, part: 5000 images (first 5000)" in warning
    md = (out / "report.md").read_text()
    assert "- images: full=70000, part=5000 **(differs)**" in md
    assert "- data: full=/data/mnist, part=/data/mnist\n" in md          # listed, the same
    assert "- precision: full=float32, part=mixed_bfloat16 **(differs)**" in md
    assert "differs: images: full=70000, part=5000" in printed.out
    assert "differs: backend: full=tensorflow, part=jax" in printed.out
    assert "WARNING: DIFFERENT DATA" in printed.err


def test_like_runs_differ_only_in_the_seed(tmp_path, capsys):
    a = _run(tmp_path, "a", n_samples=5000, subset=5000, fingerprint="cccc", epochs=2,
             precision="float32", backend="tensorflow", seed=0)
    b = _run(tmp_path, "b", n_samples=5000, subset=5000, fingerprint="cccc", epochs=2,
             precision="float32", backend="tensorflow", seed=1)
    assert report_cli.main([str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr()
    comp = json.loads((tmp_path / "cmp" / "report.json").read_text())["comparison"]
    assert comp["differing_conditions"] == ["seed"]
    assert not any(w.startswith("DIFFERENT DATA") for w in comp["warnings"])
    assert "WARNING" not in printed.err and "differs: seed: a=0, b=1" in printed.out


def test_same_size_other_data_is_different_data(tmp_path):
    a = _run(tmp_path, "a", n_samples=5000, subset=None, fingerprint="dddd", epochs=1,
             precision="float32", backend="tensorflow", seed=0)
    b = _run(tmp_path, "b", n_samples=5000, subset=None, fingerprint="eeee", epochs=1,
             precision="float32", backend="tensorflow", seed=0)
    assert report_cli.main([str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    comp = json.loads((tmp_path / "cmp" / "report.json").read_text())["comparison"]
    assert comp["warnings"][0].startswith("DIFFERENT DATA (data fingerprint differ)")
