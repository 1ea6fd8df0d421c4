"""Packaging: importing dgg_tf leaves the environment alone, and ``pip install .`` from
a copy of the checkout gives an importable dgg_tf (and dgg_tf.DGG) outside it."""
import os
import shutil
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_leaves_environment_unchanged():
    # scikit-learn's own import sets KMP_* variables: dgg_tf.DGG is compared after it
    code = ("import os, sys; before = dict(os.environ); import dgg_tf; "
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items()); "
            "import sklearn.base; before = dict(os.environ); dgg_tf.DGG; "
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items()); "
            "assert 'tensorflow' not in sys.modules, 'dgg_tf.DGG imported TensorFlow'")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=120)


def test_pip_install_from_a_copy(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    shutil.copytree(os.path.join(ROOT, "dgg_tf"), src / "dgg_tf",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_INDEX_URL")}
    env["PIP_NO_INDEX"] = "1"                         # nothing downloaded
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(src)],
                   check=True, cwd=tmp_path, env=env, timeout=300)
    out = subprocess.run([python, "-c", "import dgg_tf; print(dgg_tf.__file__); "
                          "print(dgg_tf.DGG.__name__)"], check=True, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert out[0].startswith(str(env_dir)), out
    assert out[1] == "DGG"
