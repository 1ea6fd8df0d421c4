"""Packaging: importing dgg_tf leaves the environment alone, and ``pip install .`` from
a copy of the checkout gives an importable dgg_tf (and dgg_tf.DGG) outside it."""
import os
import shutil
import site
import subprocess
import sys
import venv
from importlib.metadata import entry_points

import pytest

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
    # Nothing may be downloaded, so the build (--no-build-isolation) and the runtime
    # dependencies (--no-deps) come from the environment running this test. A new venv
    # with system_site_packages sees the BASE interpreter's site-packages, not this one's:
    # run from inside a virtualenv, it found the base's setuptools without bdist_wheel.
    # So the new venv is bare (no pip, no system site-packages) and a .pth file adds this
    # interpreter's site-packages (in order, with their own .pth files, as site does);
    # the new venv's own site-packages stays first, so its install of dgg_tf wins.
    if not any(ep.name == "bdist_wheel" for ep in entry_points(group="distutils.commands")):
        pytest.skip("this environment cannot build a wheel offline "
                    "(needs setuptools >= 70.1, or an older one with the wheel package)")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    ours = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    ours = [d for d in ours if os.path.isdir(d)]
    with open(os.path.join(purelib, "zz_running_environment.pth"), "w") as f:
        f.write(f"import site; list(map(site.addsitedir, {ours!r}))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PIP_INDEX_URL", "PYTHONNOUSERSITE")}
    env["PIP_NO_INDEX"] = "1"                         # nothing downloaded
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(src)],
                   check=True, cwd=tmp_path, env=env, timeout=300)
    out = subprocess.run([python, "-c", "import dgg_tf; print(dgg_tf.__file__); "
                          "print(dgg_tf.DGG.__name__)"], check=True, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert out[0].startswith(str(env_dir)), out
    assert out[1] == "DGG"
