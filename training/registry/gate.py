"""The promotion gate: `champion` moves to a version only if it is not worse on the frozen set."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.data.contract import LabeledRecord, gold_labels
from training.data.gather import to_frame
from training.experiment.evaluate import classification_metrics
from training.registry.export import frozen_records_of, load_version, model_version
from training.registry.tracking import CHALLENGER, CHAMPION, configure


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate."""

    promoted: bool
    challenger_version: str
    champion_version: str | None
    metric: str
    challenger_score: float | None
    champion_score: float | None
    tolerance: float
    reason: str


def evaluate_version_on(name: str, version: str, records: Sequence[LabeledRecord]) -> dict[str, Any]:
    """Metrics of a registered version on given records (labels aligned by name)."""
    pipeline = load_version(name, version)
    truth = gold_labels(records)
    labels = sorted(set(truth) | {str(c) for c in pipeline.classes_})
    proba = pipeline.predict_proba(to_frame(records))
    aligned = np.zeros((len(records), len(labels)))
    for k, label in enumerate(pipeline.classes_):
        aligned[:, labels.index(str(label))] = proba[:, k]
    return classification_metrics(truth, aligned, labels)


def current_champion(client: Any, name: str) -> Any | None:
    """The version holding the `champion` alias, or None before the first promotion."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # mlflow raises its own exception type when the alias is unset
        return None


def promote(
    name: str,
    *,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    metric: str = "macro_f1",
    tolerance: float = 0.01,
    root: Path = Path("."),
) -> GateDecision:
    """Move `champion` to the challenger (or a given version) only if it is not worse."""
    from mlflow import MlflowClient

    configure(root)
    client = MlflowClient()
    candidate = model_version(client, name, CHALLENGER, version)
    champion = current_champion(client, name)
    if force and not reason:
        raise ValueError("--force needs --reason: promotions that skip the gate are recorded")
    if champion is not None and str(champion.version) == str(candidate.version):
        return GateDecision(
            False,
            str(candidate.version),
            str(champion.version),
            metric,
            None,
            None,
            tolerance,
            "already champion",
        )
    decision = _judge(name, candidate, champion, metric, tolerance)
    if not decision.promoted and force:
        decision = replace(decision, promoted=True, reason=f"forced: {reason} ({decision.reason})")
    _record(client, name, candidate.version, decision, reason)
    return decision


def _judge(name: str, candidate: Any, champion: Any | None, metric: str, tolerance: float) -> GateDecision:
    """Compare the candidate with the champion on the candidate's frozen set."""
    if champion is None:
        return GateDecision(
            True, str(candidate.version), None, metric, None, None, tolerance, "no champion yet"
        )
    records = frozen_records_of(candidate.run_id)
    challenger_score = evaluate_version_on(name, str(candidate.version), records)[metric]
    champion_score = evaluate_version_on(name, str(champion.version), records)[metric]
    return GateDecision(
        challenger_score >= champion_score - tolerance,
        str(candidate.version),
        str(champion.version),
        metric,
        challenger_score,
        champion_score,
        tolerance,
        f"{metric} {challenger_score:.4f} vs champion {champion_score:.4f} (tolerance {tolerance})",
    )


def _record(client: Any, name: str, version: str, decision: GateDecision, reason: str | None) -> None:
    """Tag the version with the verdict and, when promoted, move the alias."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client.set_model_version_tag(
        name,
        version,
        f"gate.{stamp}",
        json.dumps({"promoted": decision.promoted, "reason": decision.reason, "operator_reason": reason}),
    )
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
        if reason:
            client.set_model_version_tag(name, version, "promotion_reason", reason)
