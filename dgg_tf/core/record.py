"""A run's record (``RunRecord``): what a run is (the caller's entries, seed, config,
data, neighbour table and weights it ran on) and what it found (the GMM init, the
pretrained classifier, the first steps, the summary, how it finished), as config.json
holds it; and the summary of a finished run in a few lines: the final and best full-pass
ACC and NMI with their epochs, the accuracy of each stage before DGG (GMM init,
pretrained classifier, after DGG's first step), the clusters in use, and where the
files are. The console prints the summary at the end of a run; config.json keeps it and
report.md opens with it, so the three agree by construction.

Every reader of a run's config.json goes through ``RunRecord`` (``core.rundir.RunDir``
reads and writes the file), so that its keys are named here only."""
from __future__ import annotations

import dataclasses

from dgg_tf.core.console import number

#: config.json's entries after the caller's (``RunRecord.info``), always written, in
#: the order ``run_dgg`` writes them.
ALWAYS = ("seed", "config", "epochs", "library_versions", "n_samples", "neighbors",
          "weights_provenance", "out", "data_fingerprint", "table_fingerprint", "started")
#: The entries written only once known (omitted while None, or, for the lists, empty),
#: after those, in the order a run learns them. A resumed run's "resumed" list comes
#: after the stages before training (where a run killed before it finished puts it).
WHEN_KNOWN = ("resumed", "classifier", "gmm_init", "audit_seconds", "first_steps", "summary",
              "finished", "warnings")
_LISTS = ("resumed", "first_steps", "warnings")

#: The stages ``RunRecord.stage_scores`` reads, in pipeline order.
STAGES = ("neighbor_purity", "kmeans_acc", "gmm_init_acc", "classifier_acc", "step1_acc",
          "final_acc")


@dataclasses.dataclass
class RunRecord:
    """What a run is and what it found: config.json as an object. Every field has a
    default, so that a record is built as the run goes and an older file (without
    "first_steps", "summary", "finished", ...) reads back with None/empty entries.

    ``info``: the caller's entries (source, variant, data, subset, audit_only, command,
    cwd, ...), kept at the top level of config.json before the others; a key of
    ``info`` that is also a field's name is the field's (as ``{**info, field: value}``).
    ``classifier``: the pretrained classifier's last epoch record; ``gmm_init``: the GMM
    init's measurements (K-means and GMM posterior ACC/NMI); ``first_steps``: the
    full-pass ACC after the first steps; ``summary``: ``run_summary``'s dict;
    ``finished``: when, after how many epochs and seconds, final ACC/NMI;
    ``warnings``: what went wrong along the way (a collapse, ...)."""

    info: dict = dataclasses.field(default_factory=dict)
    seed: int = None
    config: dict = None
    epochs: int = None
    library_versions: dict = dataclasses.field(default_factory=dict)
    n_samples: int = None
    neighbors: dict = dataclasses.field(default_factory=dict)
    weights_provenance: dict = dataclasses.field(default_factory=dict)
    out: str = None
    data_fingerprint: str = None
    table_fingerprint: str = None
    started: str = None
    resumed: list = dataclasses.field(default_factory=list)
    gmm_init: dict = None
    classifier: dict = None
    audit_seconds: float = None
    first_steps: list = dataclasses.field(default_factory=list)
    summary: dict = None
    finished: dict = None
    warnings: list = dataclasses.field(default_factory=list)

    # ------------------------------------------------------------ config.json
    def to_json(self) -> dict:
        """config.json's object: ``info``'s entries first, then ``ALWAYS``, then those
        of ``WHEN_KNOWN`` that are known (not None; the lists when not empty)."""
        out = {k: v for k, v in self.info.items() if k not in _ENTRIES}
        out.update((k, getattr(self, k)) for k in ALWAYS)
        for k in WHEN_KNOWN:
            v = getattr(self, k)
            if v is not None and not (k in _LISTS and not v):
                out[k] = v
        return out

    @classmethod
    def from_json(cls, d) -> "RunRecord":
        """The record of a config.json object; missing entries take their defaults (a
        null list as empty), entries this version does not know go into ``info``."""
        known = {k: v for k, v in d.items() if k in _ENTRIES}
        for k in _LISTS:
            if known.get(k) is None:
                known.pop(k, None)
        return cls(info={k: v for k, v in d.items() if k not in _ENTRIES}, **known)

    # ------------------------------------------------------------ what readers need
    @property
    def variant(self):
        """The variant the caller named (reproduce/mnist.py's --variant), or None."""
        return self.info.get("variant")

    @property
    def classifier_acc(self):
        """The pretrained classifier's ACC after its last epoch (None without labels)."""
        return (self.classifier or {}).get("acc")

    @property
    def kmeans_acc(self):
        return (self.gmm_init or {}).get("kmeans_acc")

    @property
    def gmm_init_acc(self):
        """The initial GMM's posterior ACC as the code computes it (Q3, no pi)."""
        return (self.gmm_init or {}).get("gmm_no_pi_acc")

    @property
    def neighbor_purity(self):
        return (self.neighbors or {}).get("purity")

    @property
    def step1_acc(self):
        """The full-pass ACC after DGG's first step (None if not recorded)."""
        first = [s for s in self.first_steps or [] if s.get("step") == 1]
        return first[0]["full_acc"] if first else None

    @property
    def final_acc(self):
        """The finished run's ACC of its saved predictions (None if unfinished)."""
        return (self.finished or {}).get("acc")

    @property
    def final_nmi(self):
        """The finished run's NMI ("max" normalisation) of its saved predictions."""
        return (self.finished or {}).get("nmi_max")

    @property
    def finished_epochs(self):
        return (self.finished or {}).get("epochs")

    @property
    def wall_seconds(self):
        return (self.finished or {}).get("wall_seconds")

    @property
    def configured_epochs(self):
        """The epochs the run was configured for: its config's, else the record's."""
        return (self.config or {}).get("epochs", self.epochs)

    def is_finished(self, epochs=None) -> bool:
        """Whether the run finished (with ``epochs`` epochs, if given)."""
        return bool(self.finished) and (epochs is None or self.finished.get("epochs") == epochs)

    def stage_scores(self) -> dict:
        """Each stage's accuracy (``STAGES``): the neighbour table's purity, K-means on
        the encoder means, the initial GMM's posterior as the code computes it (Q3, no
        pi), the pretrained classifier, the full pass after DGG's first step, and the
        final full pass. Empty without labels (none of them can be measured); a stage
        the run did not reach is None."""
        if "kmeans_acc" not in (self.gmm_init or {}):
            return {}
        return {"neighbor_purity": self.neighbor_purity, "kmeans_acc": self.kmeans_acc,
                "gmm_init_acc": self.gmm_init_acc, "classifier_acc": self.classifier_acc,
                "step1_acc": self.step1_acc, "final_acc": self.final_acc}

    def resumed_by(self, now: "RunRecord", from_epoch) -> "RunRecord":
        """This (earlier) record of a run continued by ``now`` (the resuming process's
        record) from epoch ``from_epoch``: the configured epochs become ``now``'s, and
        "resumed" gains an entry saying when, from which epoch, by which command and
        with which libraries."""
        entry = {"at": now.started, "from_epoch": from_epoch, "epochs": now.epochs,
                 "command": now.info.get("command"), "library_versions": now.library_versions}
        config = dict(self.config or {}, epochs=now.epochs) if self.config is not None else None
        return dataclasses.replace(self, epochs=now.epochs, config=config,
                                   resumed=list(self.resumed or []) + [entry])


#: config.json's own entries: every field but ``info`` (whose entries sit beside them)
_ENTRIES = frozenset(f.name for f in dataclasses.fields(RunRecord)) - {"info"}


# ---------------------------------------------------------------- the summary
def _best(history, key):
    rows = [r for r in history if r.get(key) is not None]
    if not rows:
        return None, None
    top = max(rows, key=lambda r: r[key])      # the first epoch that reaches the maximum
    return top[key], top["epoch"]


def run_summary(history, record, paths=None):
    """The summary dict of a run from its epoch records and its ``RunRecord`` (a
    config.json dict is read as one); metrics that need labels are None without them.
    "report" and "curves" are the files' paths in ``paths`` (a ``RunDir``), None for a
    run without a directory."""
    if not isinstance(record, RunRecord):
        record = RunRecord.from_json(record or {})
    last = history[-1] if history else {}
    best_acc, best_acc_epoch = _best(history, "full_acc")
    best_nmi, best_nmi_epoch = _best(history, "full_nmi")
    report, curves = (None, None) if paths is None else (paths.report_md, paths.curves_png)
    finished = record.finished or {}
    return {
        "epochs": len(history),
        "final_loss": last.get("loss"),
        "final_acc": last.get("full_acc"), "final_nmi": last.get("full_nmi"),
        "best_acc": best_acc, "best_acc_epoch": best_acc_epoch,
        "best_nmi": best_nmi, "best_nmi_epoch": best_nmi_epoch,
        "gmm_init_acc": record.gmm_init_acc,
        "classifier_acc": record.classifier_acc,
        "step1_acc": record.step1_acc,
        "clusters_used": last.get("clusters_used", finished.get("clusters_used")),
        "report": report,
        "curves": curves,
    }


def summary_lines(s):
    """The summary as short lines, for the console and the top of report.md: what the
    run has, and nothing it lacks. Without labels, the final loss instead of ACC and
    NMI; the clusters in use when known; the files only when the run has them."""
    if s["final_acc"] is None and s["best_acc"] is None:
        lines = [f"final (epoch {s['epochs']}): loss {number(s.get('final_loss'))} "
                 "(no labels: no ACC or NMI)"]
    else:
        lines = [
            f"final (epoch {s['epochs']}): ACC {number(s['final_acc'])}, NMI "
            f"{number(s['final_nmi'])}; best ACC {number(s['best_acc'])} (epoch "
            f"{s['best_acc_epoch']}), best NMI {number(s['best_nmi'])} (epoch "
            f"{s['best_nmi_epoch']})",
            f"before DGG: GMM init ACC {number(s['gmm_init_acc'])}, pretrained classifier ACC "
            f"{number(s['classifier_acc'])}, after DGG's first step {number(s['step1_acc'])}"]
    if s["clusters_used"] is not None:
        lines.append(f"clusters in use at the end: {s['clusters_used']}")
    if s.get("report") is not None or s.get("curves") is not None:
        lines.append(f"report: {s['report']}; curves: {s['curves']}")
    return lines
