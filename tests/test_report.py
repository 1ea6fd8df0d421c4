"""The discrepancy report: the audit on a tiny network (scikit-learn digits), exact
zeros for a switch that changes nothing, report.md / report.json, and the
``python -m dgg_tf.report`` comparison of finished runs."""
import json
import math

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from dgg_tf import report
from dgg_tf.audit import audit, running_vs_full
from dgg_tf.cli import report as report_cli
from dgg_tf.core import files
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.history import read_history_csv, write_history_csv
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.numerics.weights import get_params
from dgg_tf.report import QUIRK_IDS, write_report
from dgg_tf.stages.dgg import encode
from dgg_tf.stages.initialise import kmeans_init

SMALL = DGGConfig(input_dim=64, encoder_dims=(32, 32, 64), latent_dim=10, n_clusters=10,
                  epochs=3, classifier_epochs=2, kmeans_n_init=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_kmeans():
    """scikit-learn's OpenMP K-means on tiny data is ~100x slower with 2 busy cores than
    single-threaded; keep the tests fast (no effect on results)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x, y = (d.data[:300] / 16.0).astype(np.float32), d.target[:300]
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :41].astype(np.int32)
    rng = np.random.default_rng(0)
    picks = rng.permuted(np.broadcast_to(np.arange(1, 101), (300, 100)), axis=1)[:, :40]
    top = np.argsort(d2, axis=1, kind="stable")[:, :101]
    random = np.concatenate([top[:, :1], np.take_along_axis(top, picks, 1)], 1).astype(np.int32)
    return x, y, {"nearest": nearest, "random_top100": random}


def _net(config):
    keras.utils.set_random_seed(3)
    return DGGNetwork(config)


def _init(net, x, config):
    init = kmeans_init(encode(net, x), config)
    net.gmm.mean.assign(init["mean"])
    net.gmm.std.assign(init["std"])


@pytest.fixture(scope="module")
def code_audit(digits):
    x, y, tables = digits
    net = _net(SMALL)
    _init(net, x, SMALL)
    before = get_params(net)
    result = audit(net, x, tables["random_top100"], y, SMALL, n_batches=2, seed=0, tables=tables)
    return result, before, get_params(net)


@pytest.fixture(scope="module")
def paper_audit(digits):
    x, y, tables = digits
    cfg = DGGConfig.preset("paper", **{k: v for k, v in SMALL.to_dict().items()
                                       if k in ("input_dim", "latent_dim", "n_clusters", "epochs",
                                                "classifier_epochs", "kmeans_n_init")},
                           encoder_dims=(32, 32, 64))
    net = _net(cfg)
    _init(net, x, cfg)
    return audit(net, x, tables["random_top100"], y, cfg, n_batches=2, seed=0,
                 classifier_epochs=1, history=[
                     {"epoch": 1, "running_acc": 0.5, "full_acc": 0.6, "running_nmi": 0.4,
                      "full_nmi": 0.45, "full_nmi_arithmetic": 0.47}])


def test_every_quirk_has_text_and_numbers(code_audit):
    result, before, after = code_audit
    for q in QUIRK_IDS:
        assert {"title", "switch", "code", "paper"} <= set(result[q]), q
        assert len(result[q]) > 4, f"{q} has no measurement or note"
    assert result["setup"]["n_batches"] == 2 and result["setup"]["rows_per_batch"] == 2100
    json.dumps(result, allow_nan=False)                      # JSON-clean
    for k in before:                                         # the audit leaves the net alone
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def test_switch_that_changes_nothing_gives_exact_zeros(code_audit):
    q7 = code_audit[0]["Q7"]
    assert q7["configured_similarity"] == "no_inform" and q7["similarity_uses_sigma"] is False
    cw = q7["configured_weights"]
    assert cw["identical"] is True and cw["max_abs_diff"] == 0.0 and cw["n_differing"] == 0
    assert cw["weights"]["code"] == cw["weights"]["honoured"]
    assert q7["loss_effect"]["max_abs_term_change"] == 0.0
    assert set(q7["loss_effect"]["term_change_per_sample"].values()) == {0.0}
    assert "ignores distances" in q7["note"]
    # the distance-based kinds do change, and sigma's quirk is measured for them
    assert q7["by_similarity"]["gauss"]["max_abs_diff"] > 0
    # Q8: the DGG schedule of a 3-epoch run never decays, so the two schedules agree there
    q8 = code_audit[0]["Q8"]
    assert q8["dgg"]["epochs_differing_within_run"] == 0
    assert q8["dgg"]["first_decay_epoch"] == {"code": 9, "nominal": 10}
    assert q8["dgg"]["lr_code"][9] == pytest.approx(0.0018) and q8["dgg"]["lr_nominal"][9] == 0.002


def test_measurements_are_consistent(code_audit):
    r = code_audit[0]
    q4 = r["Q4"]
    assert 0 <= q4["argmax_agreement"] <= 1 and q4["mean_abs_gamma_diff"] > 0
    assert -1 <= q4["gradient_cosine"]["min"] <= q4["gradient_cosine"]["max"] <= 1
    t = q4["terms_per_sample"]
    # the classifier input does not enter the reconstruction or the latent entropy
    assert t["change (sample - mean)"]["reconstruction"] == 0.0
    assert t["change (sample - mean)"]["latent_entropy"] == 0.0
    q9 = r["Q9"]
    # no_inform: self weight = sum of neighbour weights, so the formulas agree up to rounding
    assert q9["max_abs_pi_diff_same_gamma"] < 1e-5
    assert q9["pc_row_sum"]["max"] == pytest.approx(1.0, abs=1e-5)
    q10 = r["Q10"]["gmm_term_per_sample"]
    assert q10["paper typo (1)"] == 2 * q10["code (1/2)"]
    loss = r["Q10"]["loss"]
    assert loss["paper typo (1)"] == pytest.approx(loss["code (1/2)"] - q10["code (1/2)"], rel=1e-5)
    assert set(r["Q1"]["purity"]) == {"random_top100", "nearest"}
    assert r["Q1"]["purity"]["nearest"] > r["Q1"]["purity"]["random_top100"]
    assert {"n_init=1", "n_init=2", "n_init=10"} == set(r["Q2"]["by_restarts"])
    assert {"kmeans", "no_pi", "with_pi"} == set(r["Q3"]["metrics"])
    assert set(r["Q5"]["by_loss"]) == {"double_softmax", "cross_entropy"}
    assert r["Q5"]["epochs"] == 2 and r["Q5"]["reduced_epochs"] is False
    assert r["Q6"]["by_sigma_mode"]["honoured"]["finite"] is True


def test_paper_variant_measures_sigma_and_prior(paper_audit):
    r = paper_audit
    q7 = r["Q7"]
    assert q7["configured_similarity"] == "gauss" and q7["configured"] == "honoured"
    assert q7["configured_weights"]["max_abs_diff"] > 0
    assert q7["n_batches_with_different_weights"] == 2
    assert q7["loss_effect"]["max_abs_term_change"] > 0
    # stable keys: settings in CHOICES order whatever is configured
    assert set(q7["loss_effect"]["terms_per_sample"]) == {"code", "honoured", "change (honoured - code)"}
    assert "change (sample - mean)" in r["Q4"]["terms_per_sample"]
    assert "change (paper - code)" in r["Q9"]["terms_per_sample"]
    # gauss is not normalised: pc's row sums spread
    assert r["Q9"]["pc_row_sum"]["std"] > 1e-3
    assert r["Q5"]["reduced_epochs"] is True and r["Q5"]["epochs"] == 1
    h = r["Q12"]["history"]
    assert h["final"]["full_acc"] == 0.6 and h["acc_gap (running - full)"]["final"] == pytest.approx(-0.1)


def test_write_report_and_compare_runs(code_audit, paper_audit, tmp_path, capsys):
    hist = [{"epoch": e, "lr": 0.002, "loss": 1.0 / e, "running_acc": 0.5 + 0.01 * e,
             "running_nmi": 0.4, "full_acc": 0.55 + 0.02 * e, "full_nmi": 0.45,
             "full_nmi_arithmetic": 0.46, "seconds": 1.5} for e in (1, 2, 3)]
    bad = dict(code_audit[0])
    bad["Q4"] = dict(bad["Q4"], weird=float("nan"), huge=float("inf"))
    runs = {}
    for name, a in (("mnist-code", bad), ("mnist-paper", paper_audit)):
        d = tmp_path / name
        d.mkdir()
        write_history_csv(d / "history.csv", hist)
        (d / "config.json").write_text(json.dumps({"variant": name.split("-")[1]}))
        rep = write_report(d, a, [{"name": name, "variant": name.split("-")[1], "history": hist}])
        runs[name] = d
        if a is bad:
            assert rep["Q4"]["weird"] is None and rep["Q4"]["huge"] == "inf"
        text = (d / "report.json").read_text()
        assert "NaN" not in text and "Infinity" not in text
        assert not list(d.glob("*.tmp-*"))
    assert read_history_csv(runs["mnist-code"] / "history.csv") == hist     # exact round trip
    md = (runs["mnist-code"] / "report.md").read_text()
    for q in QUIRK_IDS:
        assert md.count(f"## {q}:") == 1
    assert "| mnist-code | code | 3 | 0.61 |" in md

    out = tmp_path / "compare"
    assert report_cli.main([str(runs["mnist-code"]), str(runs["mnist-paper"]), "--out", str(out)]) == 0
    combined = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in combined["runs"]] == ["mnist-code", "mnist-paper"]
    assert combined["runs"][0]["best"]["full_acc"] == {"value": hist[-1]["full_acc"], "epoch": 3}
    assert combined["runs"][1]["final"]["full_acc"] == hist[-1]["full_acc"]
    for q in QUIRK_IDS:
        assert set(combined[q]["runs"]) == {"mnist-code", "mnist-paper"}, q
    assert combined["Q7"]["runs"]["mnist-code"]["configured_weights"]["max_abs_diff"] == 0.0
    assert combined["Q7"]["runs"]["mnist-paper"]["configured_weights"]["max_abs_diff"] > 0
    assert (out / "curves.png").stat().st_size > 1000
    assert "### Q7 side by side" in (out / "report.md").read_text()   # one table, a column per run
    assert report_cli.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_clean_and_running_vs_full():
    assert files.clean({"a": np.float32(1.5), "b": [np.int64(2), math.nan], "c": -math.inf}) == \
        {"a": 1.5, "b": [2, None], "c": "-inf"}
    assert "note" in running_vs_full([{"epoch": 1, "loss": 1.0}])


def test_third_switch_value_and_new_switch(digits, monkeypatch):
    """A switch with a third value must not break the audit or the report: the configured
    value is compared with each alternative (keys then name it), a value the port cannot
    compute is reported as an error or not measured; a switch added to CHOICES later
    must not break build_report / render_markdown."""
    from dgg_tf.core import config
    extra = {"neighbor_selection": "mutual", "gmm_init_posterior": "pi_only",
             "classifier_input": "z_mode", "classifier_pretrain_loss": "focal",
             "sigma_mode": "fixed", "lr_schedule": "cosine", "prior": "uniform",
             "similarity": "cosine_sim"}
    for switch, value in extra.items():
        monkeypatch.setitem(config.CHOICES, switch, config.CHOICES[switch] + (value,))
    x, y, tables = digits
    cfg = SMALL.replace(classifier_input="z_mode", classifier_epochs=1)
    net = _net(cfg)
    _init(net, x, cfg)
    r = audit(net, x, tables["random_top100"], y, cfg, n_batches=1, tables=tables)
    json.dumps(r, allow_nan=False)
    assert set(r["Q4"]["terms_per_sample [mean]"]) == {"mean", "z_mode", "change (z_mode - mean)"}
    assert set(r["Q4"]["terms_per_sample [sample]"]) == {"sample", "z_mode",
                                                         "change (z_mode - sample)"}
    # the objective runs an unknown classifier input as 'sample': same gradient
    assert r["Q4"]["gradient_cosine [sample]"]["mean"] == pytest.approx(1.0)
    assert r["Q1"]["source"]["mutual"] == "table not available" and r["Q1"]["purity"]["mutual"] is None
    assert r["Q3"]["not_measured"] == ["pi_only"] and "argmax_agreement" in r["Q3"]
    assert set(r["Q5"]["by_loss"]) == {"double_softmax", "cross_entropy", "focal"}
    assert "max_abs_pi_diff [paper]" in r["Q9"] and r["Q9"]["max_abs_pi_diff [uniform]"] is None
    assert "uniform" in r["Q9"]["error [uniform]"]
    assert "cosine" in r["Q8"]["dgg"]["errors"] and r["Q8"]["dgg"]["epochs_differing_within_run"] == 0
    assert "error" in r["Q7"]["configured_weights"]["weights"]["fixed"]
    assert r["Q7"]["loss_effect"]["max_abs_term_change"] == 0.0     # no_inform: still exact zeros
    assert set(r["Q7"]["by_similarity"]) == {"gauss", "inv_gauss", "student_t"}
    assert "error" in r["Q6"]["by_sigma_mode"]["fixed"]

    monkeypatch.setitem(config.CHOICES, "gmm_coefficient", ("half", "one"))
    r["Q8"]["dgg"]["lr_cosine"] = [0.001] * len(r["Q8"]["dgg"]["lr_code"])
    md = report.render_markdown(report.build_report(r, [{"name": "run", "history": []}]))
    assert "- Switch: classifier_input: mean (code) / sample / z_mode" in md
    assert "- Switch: sigma_mode: code / honoured / fixed" in md
    assert "| epoch | code | nominal | cosine |" in md and "| 0 | 0.002 | 0.002 | 0.001 **differs** |" in md
    assert "terms_per_sample [sample]" in md


def test_curves_of_a_one_epoch_run_show_the_first_steps():
    """The full-pass ACC line starts with the probes after DGG's first steps, each at
    step / steps_per_epoch; a run without steps per epoch plots its epochs only."""
    from matplotlib.figure import Figure

    from dgg_tf.core.record import RunRecord
    from dgg_tf.report.runfiles import _plot_metric
    record = RunRecord(n_samples=1000, config={"batch_size": 100})
    assert report.steps_per_epoch(record) == 10 and report.steps_per_epoch(RunRecord()) is None
    run = {"name": "r", "history": [{"epoch": 1, "full_acc": 0.6, "full_nmi": 0.5}],
           "first_steps": [{"step": 1, "full_acc": 0.3, "full_nmi": 0.2},
                           {"step": 5, "full_acc": 0.4, "full_nmi": 0.3}],
           "steps_per_epoch": report.steps_per_epoch(record)}
    for metric, values in (("acc", [0.3, 0.4, 0.6]), ("nmi", [0.2, 0.3, 0.5])):
        ax = Figure().subplots()
        _plot_metric(ax, [run], metric)
        assert list(ax.lines[0].get_xdata()) == [0.1, 0.5, 1]
        assert list(ax.lines[0].get_ydata()) == values
    ax = Figure().subplots()
    _plot_metric(ax, [dict(run, steps_per_epoch=None)], "acc")
    assert list(ax.lines[0].get_xdata()) == [1]
