"""Close the loop: retrain on moderators' feedback and promote only a challenger that is not worse.

The steps, in order:
1. gather starter/public data + everything in data/labeled/ (experiment config) + feedback from the
   serving store (optionally only since a date);
2. split the feedback by time: the most recent slice is held out and never trained on; the rest
   joins training; train a challenger with the experiment config and register it (the run logs
   the exact dataset fingerprint, feedback included);
3. evaluate champion and challenger on (a) the frozen evaluation set — both runs' frozen records,
   so neither model is judged only on data chosen by its own run — and (b) the held-out recent
   feedback slice;
4. promote only if the challenger is not worse on either beyond its tolerance; write the
   comparison (terminal table + MLflow artifact `retrain/comparison.json` and `.md`) either way;
5. on promotion, export the bundle and ask running servers to reload it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from serving.schema import DEFAULT_BUNDLE_DIR, SPAM
from training.data.contract import ContractError, LabeledRecord, gold_labels, validate_record
from training.data.gather import to_frame
from training.experiment.config import ExperimentConfig
from training.experiment.evaluate import classification_metrics
from training.experiment.train import run_experiment
from training.registry.export import export_bundle, frozen_records_of, load_version
from training.registry.gate import current_champion
from training.registry.tracking import CHAMPION, configure, log_and_register

# Tolerances: how much worse than the champion a challenger may be and still be promoted.
FROZEN_TOLERANCE = 0.01  # macro-F1 on the frozen evaluation set
FEEDBACK_TOLERANCE = 0.02  # accuracy (agreement with moderators) on the recent feedback slice
RECENT_FRACTION = 0.2


@dataclass(frozen=True)
class Comparison:
    """One row of the champion/challenger comparison."""

    evaluation: str
    metric: str
    n: int
    champion: float | None
    challenger: float
    tolerance: float | None

    @property
    def delta(self) -> float | None:
        """Challenger minus champion."""
        return None if self.champion is None else self.challenger - self.champion

    @property
    def passes(self) -> bool:
        """Not worse than the champion beyond the tolerance (informational rows always pass)."""
        if self.tolerance is None or self.champion is None:
            return True
        return self.challenger >= self.champion - self.tolerance


@dataclass
class RetrainReport:
    """What a retrain did and why it did (not) promote."""

    challenger_version: str
    champion_version: str | None
    promoted: bool
    reason: str
    feedback_total: int
    feedback_trained: int
    feedback_held_out: int
    comparisons: list[Comparison] = field(default_factory=list)
    exported_to: str | None = None
    notified: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the MLflow artifact)."""
        data = asdict(self)
        data["comparisons"] = [asdict(c) | {"delta": c.delta, "passes": c.passes} for c in self.comparisons]
        return data

    def to_markdown(self) -> str:
        """The comparison as a markdown table."""
        lines = [
            f"# Retrain: challenger v{self.challenger_version} vs champion "
            f"{'v' + self.champion_version if self.champion_version else '(none)'}",
            "",
            f"**{'Promoted' if self.promoted else 'Not promoted'}**: {self.reason}",
            "",
            f"Feedback: {self.feedback_total} records; {self.feedback_trained} trained on, "
            f"{self.feedback_held_out} most recent held out for evaluation.",
            "",
            "| evaluation | metric | n | champion | challenger | delta | tolerance | ok |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in self.comparisons:
            lines.append(
                f"| {c.evaluation} | {c.metric} | {c.n} | {_fmt(c.champion)} | {c.challenger:.4f} | "
                f"{_fmt(c.delta, signed=True)} | {_fmt(c.tolerance)} | {'yes' if c.passes else 'NO'} |"
            )
        return "\n".join(lines) + "\n"


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def load_feedback(store_url: str, since: datetime | None = None) -> list[LabeledRecord]:
    """Moderators' verdicts from the serving store as canonical records (latest per comment)."""
    from serving.store.store import Store

    store = Store.open(store_url)
    try:
        rows = list(store.export_labels(since=since))
    finally:
        store.close()
    records = []
    for number, row in enumerate(rows, start=1):
        try:
            records.append(validate_record(row, path=f"store:{store_url}", line=number))
        except ContractError:
            continue  # a verdict the contract cannot hold (e.g. malformed label) is not training data
    return records


def split_by_time(
    records: Sequence[LabeledRecord], fraction: float = RECENT_FRACTION
) -> tuple[list[LabeledRecord], list[LabeledRecord]]:
    """(older, most recent) by created_at; the recent slice is evaluation-only."""
    ordered = sorted(records, key=lambda r: (r.created_at or "", r.comment_id or ""))
    if len(ordered) < 5:
        return [], list(ordered)  # too few to spare any for training and still judge the model
    cut = len(ordered) - max(1, round(len(ordered) * fraction))
    return ordered[:cut], ordered[cut:]


def _scores(pipeline: Any, records: Sequence[LabeledRecord]) -> tuple[np.ndarray, list[str]]:
    return pipeline.predict_proba(to_frame(records)), [str(c) for c in pipeline.classes_]


def _agreement(pipeline: Any, records: Sequence[LabeledRecord]) -> dict[str, Any]:
    proba, labels = _scores(pipeline, records)
    predicted = [labels[k] for k in proba.argmax(axis=1)]
    truth = gold_labels(records)
    per_label = {}
    for label in sorted(set(truth)):
        idx = [i for i, t in enumerate(truth) if t == label]
        per_label[label] = sum(predicted[i] == label for i in idx) / len(idx)
    return {
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        "recall": per_label,
    }


def compare(
    champion: Any | None, challenger: Any, frozen: Sequence[LabeledRecord], recent: Sequence[LabeledRecord]
) -> list[Comparison]:
    """Champion vs challenger on the frozen set (gate: macro-F1) and recent feedback (gate: accuracy)."""
    rows: list[Comparison] = []

    def macro_f1(pipeline: Any) -> float:
        proba, labels = _scores(pipeline, frozen)
        truth = gold_labels(frozen)
        all_labels = labels + sorted(set(truth) - set(labels))
        aligned = np.zeros((len(frozen), len(all_labels)))
        aligned[:, : len(labels)] = proba
        return float(classification_metrics(truth, aligned, all_labels)["macro_f1"])

    if frozen:
        rows.append(
            Comparison(
                "frozen evaluation set",
                "macro_f1",
                len(frozen),
                macro_f1(champion) if champion is not None else None,
                macro_f1(challenger),
                FROZEN_TOLERANCE,
            )
        )
    if recent:
        old = _agreement(champion, recent) if champion is not None else None
        new = _agreement(challenger, recent)
        rows.append(
            Comparison(
                "recent feedback (held out)",
                "accuracy",
                len(recent),
                old["accuracy"] if old else None,
                new["accuracy"],
                FEEDBACK_TOLERANCE,
            )
        )
        for label, recall in new["recall"].items():
            n = sum(r.label == label for r in recent)
            rows.append(
                Comparison(
                    "recent feedback (held out)",
                    f"recall[{label}]",
                    n,
                    old["recall"].get(label) if old else None,
                    recall,
                    None,
                )
            )
    return rows


def notify_servers(urls: Sequence[str], admin_key: str | None, timeout: float = 10.0) -> dict[str, str]:
    """POST /v1/admin/reload on each running server; returns an outcome per URL."""
    outcomes = {}
    for url in urls:
        request = urllib.request.Request(
            url.rstrip("/") + "/v1/admin/reload",
            method="POST",
            headers={"Authorization": f"Bearer {admin_key}"} if admin_key else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.loads(response.read() or b"{}")
                outcomes[url] = f"reloaded {body.get('model', {}).get('version', '?')}"
        except urllib.error.HTTPError as exc:
            outcomes[url] = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            outcomes[url] = f"unreachable: {exc}"
    return outcomes


def retrain(
    config: ExperimentConfig,
    *,
    root: Path = Path("."),
    store_url: str | None = None,
    since: datetime | None = None,
    export_dir: Path | None = DEFAULT_BUNDLE_DIR,
    notify: Sequence[str] = (),
    admin_key: str | None = None,
    config_path: str | None = None,
    progress: Any = None,
) -> RetrainReport:
    """Run the whole retrain loop once; see the module docstring for the steps."""
    from mlflow import MlflowClient

    feedback = load_feedback(store_url, since) if store_url else []
    older, recent = split_by_time(feedback)
    kwargs = {"progress": progress} if progress else {}
    result = run_experiment(config, root, extra_train=older, **kwargs)
    registered = log_and_register(result, root, config_path)
    configure(root)
    client = MlflowClient()
    name = config.registered_model
    champion_version = current_champion(client, name)
    champion = None
    frozen = list(result.frozen_records)
    if champion_version is not None:
        champion = load_version(name, str(champion_version.version))
        frozen = _union(frozen, frozen_records_of(champion_version.run_id))
    comparisons = compare(champion, result.pipeline, frozen, recent)
    promoted, reason = _verdict(champion_version is not None, comparisons)
    report = RetrainReport(
        challenger_version=registered.version,
        champion_version=str(champion_version.version) if champion_version else None,
        promoted=promoted,
        reason=reason,
        feedback_total=len(feedback),
        feedback_trained=len(older),
        feedback_held_out=len(recent),
        comparisons=comparisons,
    )
    _record_verdict(client, name, registered.version, report)
    if promoted and export_dir is not None:
        export_bundle(name, export_dir, alias=CHAMPION, root=root)
        report.exported_to = str(export_dir)
        report.notified = notify_servers(notify, admin_key)
    _log_comparison(registered.run_id, report)
    return report


def _union(frozen: list[LabeledRecord], more: Sequence[LabeledRecord]) -> list[LabeledRecord]:
    """Both runs' frozen sets, so neither model is judged only on data its own run chose."""
    seen = {(r.comment_id, r.text, r.label) for r in frozen}
    return frozen + [r for r in more if (r.comment_id, r.text, r.label) not in seen]


def _verdict(has_champion: bool, comparisons: Sequence[Comparison]) -> tuple[bool, str]:
    """(promote?, why): promote unless the challenger is worse than the champion beyond a tolerance."""
    if not has_champion:
        return True, "no champion yet"
    failing = [c for c in comparisons if not c.passes]
    if not failing:
        return True, "not worse than the champion on the frozen set or recent feedback"
    return False, "; ".join(
        f"{c.metric} on {c.evaluation} {c.challenger:.4f} < champion {_fmt(c.champion)} − {c.tolerance}"
        for c in failing
    )


def _record_verdict(client: Any, name: str, version: str, report: RetrainReport) -> None:
    """Tag the challenger with the verdict and, when promoted, make it the champion."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    verdict = json.dumps({"promoted": report.promoted, "reason": report.reason})
    client.set_model_version_tag(name, version, f"retrain.{stamp}", verdict)
    if report.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)


def _log_comparison(run_id: str, report: RetrainReport) -> None:
    """The comparison as artifacts of the challenger's run (JSON and markdown)."""
    import mlflow

    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(report.to_dict(), "retrain/comparison.json")
        mlflow.log_text(report.to_markdown(), "retrain/comparison.md")


def campaign_catch_rate(pipeline: Any, texts: Sequence[str], label: str = SPAM) -> float:
    """Share of a campaign's comments (no article) that the model labels `label`."""
    import pandas as pd

    proba = pipeline.predict_proba(pd.DataFrame({"text": list(texts)}))
    labels = [str(c) for c in pipeline.classes_]
    return float(np.mean([labels[k] == label for k in proba.argmax(axis=1)]))
