"""The report package itself: the comparison command refuses to write into a run it
reads, ``python -m dgg_tf.report`` runs, importing it loads no TensorFlow, atomic JSON
writes are strict, and no function is longer than 80 lines."""
import ast
import json
import math
import pathlib
import subprocess
import sys

import pytest

from dgg_tf import report
from dgg_tf.cli import report as report_cli
from dgg_tf.core import files
from dgg_tf.core.history import write_history_csv

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(tmp_path):
    """A finished run directory: history.csv, config.json, report.md / report.json."""
    d = tmp_path / "mnist-code"
    d.mkdir()
    hist = [{"epoch": 1, "loss": 1.0, "running_acc": 0.5, "running_nmi": 0.4,
             "full_acc": 0.6, "full_nmi": 0.45, "seconds": 1.0}]
    write_history_csv(d / "history.csv", hist)
    (d / "config.json").write_text(json.dumps({"variant": "code"}))
    report.write_report(d, None, [{"name": d.name, "variant": "code", "history": hist}])
    return d


@pytest.mark.parametrize("out", [".", "compare", "sub/compare", "../mnist-code/x"])
def test_refuses_to_write_into_a_run_it_reads(run_dir, tmp_path, capsys, out):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    other = tmp_path / "other"
    other.mkdir()
    write_history_csv(other / "history.csv", [{"epoch": 1, "loss": 1.0}])
    assert report_cli.main([str(other), str(run_dir), "--out", str(run_dir / out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(run_dir) in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before   # nothing written


def test_refuses_a_link_to_a_run(run_dir, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(run_dir)
    assert report_cli.main([str(run_dir), "--out", str(link)]) == 2
    assert "error: " in capsys.readouterr().err


def test_module_command(run_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "dgg_tf.report", *map(str, args)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    refused = run(run_dir, "--out", run_dir)
    assert refused.returncode == 2 and "error: " in refused.stderr
    done = run(run_dir, "--out", tmp_path / "compare")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "compare" / "report.json").read_text())["runs"][0]["epochs"] == 1


def test_import_loads_no_tensorflow():
    code = ("import sys, dgg_tf.report; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_write_json_atomic_is_strict_json(tmp_path):
    path = tmp_path / "a.json"
    files.write_json_atomic(path, {"x": math.nan, "y": math.inf, "z": (1, 2)})
    assert path.read_text() == json.dumps({"x": None, "y": "inf", "z": [1, 2]}, indent=1) + "\n"
    files.write_text_atomic(tmp_path / "b.txt", "text")
    assert (tmp_path / "b.txt").read_text() == "text" and not list(tmp_path.glob("*.tmp-*"))


def test_no_function_over_80_lines():
    for path in sorted((ROOT / "dgg_tf").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path.name}: {node.name} has {length} lines"
