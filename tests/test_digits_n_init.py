"""reproduce/digits.py --n-init: the kept seed is the one with the lowest final loss,
and the summary's means are the plain means (values worked out by hand)."""
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits():
    spec = importlib.util.spec_from_file_location(
        "digits_script", os.path.join(ROOT, "reproduce", "digits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kept_seed_is_the_lowest_loss_and_the_gain_is_against_the_mean():
    runs = [{"seed": 0, "n_init_results": [
                {"random_state": 0, "loss": 5.0, "acc": 0.60},
                {"random_state": 1, "loss": 4.0, "acc": 0.90},   # lowest loss
                {"random_state": 2, "loss": 6.0, "acc": 0.30}]},
            {"seed": 3, "n_init_results": [
                {"random_state": 3, "loss": 1.0, "acc": 0.50},   # lowest loss
                {"random_state": 4, "loss": 2.0, "acc": 0.80}]}]
    out = _digits().n_init_summary(runs)
    assert [r["kept_seed"] for r in out["runs"]] == [1, 3]
    assert [r["kept_acc"] for r in out["runs"]] == [0.90, 0.50]
    assert out["runs"][0]["mean_acc"] == pytest.approx(0.60)
    assert out["runs"][1]["mean_acc"] == pytest.approx(0.65)
    assert out["gain_per_run"] == pytest.approx([0.30, -0.15])
    assert out["gain_mean"] == pytest.approx(0.075)
    assert out["kept_acc_mean"] == pytest.approx(0.70)
    assert out["seed_acc_mean"] == pytest.approx(0.625)
    assert (out["runs"][0]["best_acc"], out["runs"][0]["worst_acc"]) == (0.90, 0.30)
