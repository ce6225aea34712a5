"""What a run shows a reader: the markdown model card and the evaluation plots logged beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.data.gather import to_frame

if TYPE_CHECKING:
    from training.experiment.train import TrainResult


def plots(result: TrainResult, directory: Path) -> list[Path]:
    """Confusion matrix and precision-recall curves on the frozen set, as PNG files in `directory`."""
    frozen = result.metrics.get("frozen")
    if not frozen or not result.frozen_records:
        return []
    import matplotlib

    matplotlib.use("Agg")
    return [_confusion_matrix(frozen, directory), _pr_curves(result, directory)]


def _confusion_matrix(frozen: dict[str, Any], directory: Path) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay(np.array(frozen["confusion_matrix"]), display_labels=frozen["labels"]).plot(
        ax=ax, colorbar=False, xticks_rotation=30
    )
    ax.set_title("Frozen evaluation set")
    fig.tight_layout()
    path = directory / "confusion_matrix.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pr_curves(result: TrainResult, directory: Path) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.metrics import PrecisionRecallDisplay

    proba = result.pipeline.predict_proba(to_frame(result.frozen_records))
    model_labels = [str(c) for c in result.pipeline.classes_]
    truth = [r.label for r in result.frozen_records]
    fig, ax = plt.subplots(figsize=(6, 5))
    for k, label in enumerate(model_labels):
        positives = np.array([t == label for t in truth])
        if 0 < positives.sum() < len(positives):
            PrecisionRecallDisplay.from_predictions(positives, proba[:, k], name=label, ax=ax)
    ax.set_title("Precision-recall per label (frozen set)")
    fig.tight_layout()
    path = directory / "pr_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def model_card(result: TrainResult, version: str | None = None) -> str:
    """A short markdown model card for the run."""
    frozen = result.metrics.get("frozen", {})
    lines = [
        f"# {result.config.registered_model} {('v' + version) if version else ''}".strip(),
        "",
        f"Experiment `{result.config.name}`; classifier `{result.best['kind']}` "
        f"{json.dumps(result.best['params'])}.",
        "",
        "## Data",
        f"Training rows: {result.fingerprint['rows']} (sha256 `{result.fingerprint['sha256'][:16]}…`).",
        "",
        "| source | rows |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in result.fingerprint["by_source"].items()],
        "",
        "Constructed labels: `aoc_repaired` off_topic pairs are AOC comments re-paired with another",
        "article (not human labels); context augmentation copies rows with partial/no article and",
        "places some article-less spam/abuse under a random article.",
        "",
        "## Frozen evaluation (article-grouped, never trained on)",
        f"macro-F1 {frozen.get('macro_f1', float('nan')):.3f}, accuracy "
        f"{frozen.get('accuracy', float('nan')):.3f}, ECE {frozen.get('ece', float('nan')):.3f}.",
        "",
        "| label | precision | recall | F1 | PR-AUC | support |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in frozen.get("per_class", {}).items():
        lines.append(
            f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['pr_auc']:.3f} | {m['support']} |"
        )
    lines += [
        "",
        "## Thresholds",
        "```json",
        json.dumps(result.thresholds, indent=2),
        "```",
        "",
        "## False off-topic rate on real (comment, own article) pairs",
        "```json",
        json.dumps(result.metrics.get("false_off_topic", {}), indent=2),
        "```",
        "",
        "## Corpus leakage check",
        "```json",
        json.dumps(result.metrics.get("leakage", {}), indent=2),
        "```",
    ]
    head = result.metrics.get("abuse_head")
    if head:
        lines += [
            "",
            "## Abusive head: each source scored by a head that never trained on it",
            "",
            f"Protocol: {head.get('protocol')}; thresholds from {head.get('thresholds_from')}: "
            f"review_at {head.get('review_at')}, reject_at {head.get('reject_at')}.",
            "",
            head.get("table_markdown", "(no source could be held out)"),
        ]
    relevance = result.metrics.get("relevance")
    if relevance:
        lines += [
            "",
            "## Relevance component (decides off_topic): out of fold, folds grouped by article",
            "",
            "AOC off-topic pairs are CONSTRUCTED (real comments re-paired with other articles); SemEval "
            f"labels are human. Thresholds per context: {relevance.get('thresholds')}.",
            "",
            relevance.get("table_markdown", ""),
        ]
    return "\n".join(lines) + "\n"
