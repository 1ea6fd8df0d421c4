"""report.md leads with '## Findings at a glance' (one row per quirk, no empty cell, the
measured numbers of report.json), detailed sections without n/a rows and with the Q8
schedule cut to the run's epochs, and the comparison of runs: differing settings, final
metrics side by side with their differences, single-seed / short / unfinished runs."""
import json

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from dgg_tf import report  # noqa: F401
from dgg_tf.audit import audit
from dgg_tf.cli import report as report_cli
from dgg_tf.core.config import DGGConfig
from dgg_tf.core.history import write_history_csv
from dgg_tf.numerics.models import DGGNetwork
from dgg_tf.report import QUIRK_IDS, write_report
from dgg_tf.report.findings import NOT_MEASURED, findings_rows, measured_line
from dgg_tf.stages.dgg import encode
from dgg_tf.stages.initialise import kmeans_init

SMALL = DGGConfig(input_dim=64, encoder_dims=(32, 32, 64), latent_dim=10, n_clusters=10,
                  epochs=3, classifier_epochs=2, kmeans_n_init=2)
HIST = [{"epoch": e, "lr": 0.002, "loss": 10.0 / e, "running_acc": 0.5 + 0.01 * e,
         "running_nmi": 0.4, "full_acc": 0.55 + 0.02 * e, "full_nmi": 0.45,
         "full_nmi_arithmetic": 0.46, "seconds": 1.5} for e in (1, 2, 3)]


def g(v):
    return f"{v:.4g}"


@pytest.fixture(scope="module")
def audited():
    """One audit of a tiny network on 300 scikit-learn digits (2 batches, 3 epochs)."""
    from threadpoolctl import threadpool_limits
    d = load_digits()
    x, y = (d.data[:300] / 16.0).astype(np.float32), d.target[:300]
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    top = np.argsort(d2, axis=1, kind="stable")[:, :101]
    picks = np.random.default_rng(0).permuted(np.broadcast_to(np.arange(1, 101), (300, 100)),
                                              axis=1)[:, :40]
    tables = {"nearest": top[:, :41].astype(np.int32),
              "random_top100": np.concatenate([top[:, :1], np.take_along_axis(top, picks, 1)],
                                              1).astype(np.int32)}
    keras.utils.set_random_seed(3)
    net = DGGNetwork(SMALL)
    with threadpool_limits(1):
        init = kmeans_init(encode(net, x), SMALL)
        net.gmm.mean.assign(init["mean"])
        net.gmm.std.assign(init["std"])
        return audit(net, x, tables["random_top100"], y, SMALL, n_batches=2, seed=0,
                            tables=tables)


def table_rows(md, heading):
    """The data rows (cells) of the first table after ``heading``."""
    part = md[md.index(heading):].split("\n")
    start = next(i for i, ln in enumerate(part) if ln.startswith("|---"))
    rows = []
    for ln in part[start + 1:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split(" | ")])
    return rows


def section(md, qid):
    start = md.index(f"## {qid}:")
    nxt = md.find("\n## ", start + 1)
    return md[start:nxt if nxt >= 0 else len(md)]


def assert_findings_table(md):
    rows = table_rows(md, "## Findings at a glance")
    assert [r[0].split(":")[0] for r in rows] == list(QUIRK_IDS)      # one row per quirk
    assert all(len(r) == 5 and all(c.strip() for c in r) for r in rows), rows
    return {r[0].split(":")[0]: r for r in rows}


def test_findings_of_an_audited_run(audited, tmp_path):
    from dgg_tf.core.record import RunRecord, run_summary
    from dgg_tf.core.rundir import RunDir
    summary = run_summary(HIST, RunRecord(), RunDir("run"))
    rep = write_report(tmp_path, audited, [{"name": "run", "history": HIST}], summary=summary)
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Findings at a glance") < md.index("## Q1:")
    rows = assert_findings_table(md)
    assert all(NOT_MEASURED not in r[4] for r in rows.values())
    by_loss = rep["Q5"]["by_loss"]
    assert rows["Q5"][4] == (f"classifier ACC {g(by_loss['double_softmax']['acc'])} with the "
                             f"double softmax vs {g(by_loss['cross_entropy']['acc'])} with "
                             "cross-entropy")
    assert rows["Q5"][1:4] == ["classifier_pretrain_loss", "double_softmax", "cross_entropy"]
    p = rep["Q1"]["purity"]
    assert g(p["random_top100"]) in rows["Q1"][4] and g(p["nearest"]) in rows["Q1"][4]
    r = rep["Q2"]["by_restarts"]
    assert f"{g(r['n_init=1']['acc'])} with n_init=1 vs {g(r['n_init=10']['acc'])}" in rows["Q2"][4]
    assert f"max \\|pi diff\\| {g(rep['Q9']['max_abs_pi_diff'])}" in rows["Q9"][4]
    loss = rep["Q10"]["loss"]
    assert (f"loss {g(loss['code (1/2)'])} with 1/2 vs {g(loss['paper typo (1)'])} with 1"
            in rows["Q10"][4])
    assert "epoch 9 (code) vs 10 (nominal); 0 of the run's 3 epochs" in rows["Q8"][4]
    assert f"final ACC {g(HIST[-1]['running_acc'])} running vs {g(HIST[-1]['full_acc'])} full" \
        in rows["Q12"][4]


def test_findings_without_an_audit(tmp_path):
    rep = write_report(tmp_path, None, [{"name": "run", "history": HIST}])
    rows = assert_findings_table((tmp_path / "report.md").read_text())
    for qid in QUIRK_IDS[:-1]:
        assert rows[qid][4] == NOT_MEASURED, qid
    assert rows["Q12"][4] == "run: final ACC 0.53 running vs 0.61 full pass"
    assert findings_rows({})[0][4] == NOT_MEASURED         # even an empty report object
    assert len(findings_rows(rep)) == len(QUIRK_IDS)


def test_sweep_effect_goes_in_the_line():
    rep = {"Q10": {"effect_on_final_result": {
        "configuration": "gmm_coefficient=1.0", "baseline": "code", "acc_difference": -0.0123,
        "acc_95_interval": [-0.02, -0.005], "seeds": 3}}}
    line = measured_line(rep, "Q10")
    assert line.startswith(NOT_MEASURED)
    assert "gmm_coefficient=1.0 vs code final ACC -0.0123 [-0.02, -0.005] over 3 seeds" in line


def test_sections_trimmed(audited, tmp_path):
    write_report(tmp_path, audited, [{"name": "run", "history": HIST}])
    md = (tmp_path / "report.md").read_text()
    assert "n/a" not in section(md, "Q11")
    for ln in md.splitlines():       # no table row whose every value is n/a
        cells = [c.strip() for c in ln.strip("|").split(" | ")][1:]
        assert not (ln.startswith("|") and cells and all(c == "n/a" for c in cells)), ln
    schedule = table_rows(section(md, "Q8"), "DGG learning rate per epoch")
    assert [r[0] for r in schedule] == [str(e) for e in range(SMALL.epochs)]   # 3, not 30
    assert "no decay in the listed epochs" in section(md, "Q8")     # the classifier's StepLR


def _run_dir(root, name, hist, config, finished):
    d = root / name
    d.mkdir()
    write_history_csv(d / "history.csv", hist)
    meta = {"variant": name, "seed": 0, "epochs": config["epochs"], "config": config}
    if finished:
        meta["finished"] = {"epochs": len(hist)}
    (d / "config.json").write_text(json.dumps(meta))
    return d


def test_comparison_lists_differences_and_flags_unfinished(tmp_path):
    base = SMALL.to_dict()
    a = _run_dir(tmp_path, "a", HIST, {**base, "epochs": 3}, finished=True)
    other = [dict(r, full_acc=r["full_acc"] + 0.1, loss=r["loss"] * 2) for r in HIST]
    b = _run_dir(tmp_path, "b", other, {**base, "epochs": 5, "prior": "paper"}, finished=False)
    out = tmp_path / "cmp"
    assert report_cli.main([str(a), str(b), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    rep = json.loads((out / "report.json").read_text())
    comp = md[md.index("## Comparison"):md.index("## Runs")]
    assert "- prior: a=code, b=paper" in comp and "- epochs: a=3, b=5" in comp
    assert "differences are each run minus the first (a)" in comp
    assert rep["comparison"]["differing_settings"]["prior"] == {"a": "code", "b": "paper"}
    final = {r[0]: r[1:] for r in table_rows(comp, "| final |")}
    assert final["full_acc"] == [g(0.61), g(0.71), "+0.1"]
    assert final["loss"] == [g(10 / 3), g(20 / 3), f"{10 / 3:+.4g}"]
    assert rep["comparison"]["final"]["full_acc"]["difference"]["b - a"] == pytest.approx(0.1)
    assert "- b: UNFINISHED: 3 of 5 configured epochs; config.json has no 'finished'" in comp
    assert "a: UNFINISHED" not in comp
    assert "- a: one seed only (seed 0)" in comp and "- a: 3 epochs, fewer than 50" in comp
    assert md.index("## Findings at a glance") < md.index("## Comparison")
    assert (out / "curves.png").stat().st_size > 1000


def test_finished_but_short_of_configured_epochs_is_unfinished():
    from dgg_tf.report.compare import run_state
    run = {"history": HIST[:2], "has_config": True, "configured_epochs": 3,
           "finished": {"epochs": 2}}
    assert run_state(run)["unfinished"] is True
    assert run_state(dict(run, history=HIST, finished={"epochs": 3}))["unfinished"] is False
    assert run_state({"history": HIST})["unfinished"] is None          # no config.json
