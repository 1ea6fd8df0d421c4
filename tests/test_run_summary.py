"""The summary a run ends with (console, config.json, top of report.md): its numbers
are those of history.csv and config.json."""
import json

import pytest
from tiny_mnist import base_args, mnist, one_thread_for_kmeans  # noqa: F401

from dgg_tf.core.history import read_history_csv
from dgg_tf.core.record import RunRecord, run_summary, summary_lines
from dgg_tf.core.rundir import RunDir


def test_summary_equals_history_and_config(reference):
    info = json.loads((reference / "config.json").read_text())
    hist = read_history_csv(reference / "history.csv")
    s = info["summary"]
    assert s["epochs"] == len(hist) == 2
    assert s["final_acc"] == pytest.approx(hist[-1]["full_acc"], abs=1e-12)
    assert s["final_nmi"] == pytest.approx(hist[-1]["full_nmi"], abs=1e-12)
    best = max(hist, key=lambda r: r["full_acc"])
    assert (s["best_acc"], s["best_acc_epoch"]) == (pytest.approx(best["full_acc"]), best["epoch"])
    assert s["classifier_acc"] == info["classifier"]["acc"]
    assert s["gmm_init_acc"] == info["gmm_init"]["gmm_no_pi_acc"]
    assert s["step1_acc"] == info["first_steps"][0]["full_acc"]
    assert s["clusters_used"] == hist[-1]["clusters_used"]
    assert s["final_acc"] == pytest.approx(info["finished"]["acc"])   # the saved predictions
    md = (reference / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Q1:")
    for line in summary_lines(s):
        assert f"- {line}" in md
    assert json.loads((reference / "report.json").read_text())["summary"] == s


def test_best_is_the_first_epoch_at_the_maximum_and_labels_are_optional():
    hist = [{"epoch": 1, "full_acc": 0.5, "full_nmi": 0.4}, {"epoch": 2, "full_acc": 0.7,
            "full_nmi": 0.3}, {"epoch": 3, "full_acc": 0.7, "full_nmi": 0.35}]
    s = run_summary(hist, RunRecord(), RunDir("run"))
    assert (s["best_acc"], s["best_acc_epoch"], s["best_nmi_epoch"]) == (0.7, 2, 1)
    assert (s["final_acc"], s["classifier_acc"], s["step1_acc"]) == (0.7, None, None)
    assert summary_lines(s)[-1] == "report: run/report.md; curves: run/curves.png"
    none = run_summary([{"epoch": 1, "loss": 3.0}], RunRecord(finished={"clusters_used": 7}))
    assert none["best_acc"] is None and (none["report"], none["curves"]) == (None, None)
    # without labels and files: the loss and the clusters in use, and no "n/a" or "None"
    assert summary_lines(none) == ["final (epoch 1): loss 3.0000 (no labels: no ACC or NMI)",
                                   "clusters in use at the end: 7"]
    assert summary_lines(run_summary([{"epoch": 1, "loss": 3.0}], RunRecord()))[1:] == []


def test_every_stage_says_when_it_starts_and_ends(tiny, tmp_path, capsys):
    """One start line and one 'done in' line per stage; the estimates of the time left
    come while the first epoch runs and after it; no '0 epochs left' line."""
    assert mnist.main(base_args(tiny, tmp_path / "run", "--epochs", "2", "--verbose", "1")) == 0
    out = capsys.readouterr().out
    for stage in ("GMM init (K-means on the encoder means)", "classifier pretraining",
                  "audit", "DGG training"):
        assert out.count(f"{stage}: started") == 1 and out.count(f"{stage}: done in ") == 1
        assert out.index(f"{stage}: started") < out.index(f"{stage}: done in ")
    # the estimate from the first steps only while epoch 1 runs (none when it is shorter
    # than them); the estimate of the epochs left right after epoch 1
    early = out.find("estimate from the first steps: ")
    assert early < 0 or early < out.index("\nepoch=1 loss=")
    assert out.index("\nepoch=1 loss=") < out.index("\nepoch 1 took ") < out.index("\nepoch=2 loss=")
    assert "0 epochs left" not in out and "  final (epoch 2): ACC " in out


def test_the_estimate_after_epoch_1_leaves_out_its_one_time_costs():
    """Epoch 1 = start, a first step of 5 s (tracing), 9 steps of 0.1 s, 0.5 s of
    evaluation: its steady cost is 10 x 0.1 + 0.5 s, not its 6.4 s."""
    from dgg_tf.api.observers import steady_epoch_seconds
    ends = [0.0, 5.0] + [5.0 + 0.1 * i for i in range(1, 10)]
    marks = ends + [ends[-1] + 0.5]
    assert steady_epoch_seconds(marks, marks[-1]) == pytest.approx(1.5)
    assert steady_epoch_seconds(marks, 1.2) == 1.2          # never above the epoch itself
    assert steady_epoch_seconds([0.0, 3.0, 3.5], 3.5) == 3.5   # one step: nothing to split
