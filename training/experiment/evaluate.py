"""Metrics you can trust: per class, per source, calibration, thresholds, context and leakage checks."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from serving.model.decisions import NEVER_REJECT, REJECT, Thresholds, decide
from serving.schema import ACCEPTABLE_LABEL, OFF_TOPIC, ON_TOPIC
from training.data.contract import LabeledRecord, gold_labels
from training.data.gather import to_frame

# Sources whose on_topic rows are real comments under their own article (not constructed).
REAL_ON_TOPIC_PAIR_SOURCES = frozenset({"aoc", "starter", "semeval2015", "fox_news", "feedback"})


def expected_calibration_error(y_true_idx: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: mean |accuracy − confidence| over confidence bins, weighted by bin size."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true_idx).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def classification_metrics(y_true: Sequence[str], proba: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Per-class P/R/F1, macro-F1, accuracy, PR-AUC, confusion matrix, calibration error."""
    labels = list(labels)
    y_idx = np.array([labels.index(y) for y in y_true])
    y_pred_idx = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_idx, y_pred_idx, labels=range(len(labels)), zero_division=0
    )
    per_class = {}
    for k, label in enumerate(labels):
        positives = (y_idx == k).astype(int)
        pr_auc = (
            float(average_precision_score(positives, proba[:, k]))
            if 0 < positives.sum() < len(positives)
            else float("nan")
        )
        per_class[label] = {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "pr_auc": pr_auc,
        }
    present = [k for k in range(len(labels)) if (y_idx == k).any()]
    return {
        "accuracy": float(accuracy_score(y_idx, y_pred_idx)),
        "macro_f1": float(f1_score(y_idx, y_pred_idx, labels=present, average="macro", zero_division=0)),
        "ece": expected_calibration_error(y_idx, proba),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_idx, y_pred_idx, labels=range(len(labels))).tolist(),
        "labels": labels,
        "n": len(y_idx),
    }


def choose_thresholds(
    y_true: Sequence[str],
    proba: np.ndarray,
    labels: Sequence[str],
    *,
    target_precision: float,
    target_recall: float,
    min_support: int,
    acceptable: str = ACCEPTABLE_LABEL,
) -> dict[str, dict[str, float]]:
    """reject_at per label for the target precision; review_at for the target recall.

    Chosen on out-of-fold predictions. A label that cannot reach the target precision with at
    least `min_support` rejections is never auto-rejected (reject_at NEVER_REJECT, 1.0)
    so an unproven model sends comments to review rather than to the bin.
    """
    y = np.asarray(y_true)
    reject_at: dict[str, float] = {}
    review_at: dict[str, float] = {}
    for k, label in enumerate(labels):
        if label == acceptable:
            continue
        scores = proba[:, k]
        positives = y == label
        order = np.argsort(-scores)
        sorted_scores = scores[order]
        hits = np.cumsum(positives[order])
        counts = np.arange(1, len(scores) + 1)
        precision = hits / counts
        reject = NEVER_REJECT
        # Walk down from the most confident: the lowest cut that keeps precision at target.
        ok = np.flatnonzero((precision >= target_precision) & (counts >= min_support))
        if ok.size:
            # The deepest cut whose rejected set (everything scored at or above it) still has the
            # target precision with enough support. Requiring every shallower cut to hold too was
            # too brittle: one mislabelled record among the top few reads as "precision 0.9 at 10
            # rejections" and, with saturated scores, forbade auto-rejection for the whole label.
            reject = max(float(sorted_scores[ok[-1]]), 0.5)
        reject_at[label] = round(reject, 4)
        total = positives.sum()
        review = 0.5
        if total:
            recall = hits / total
            reach = np.flatnonzero(recall >= target_recall)
            if reach.size:
                review = float(sorted_scores[reach[0]])
        review_at[label] = round(float(np.clip(review, 0.15, min(reject, 0.9))), 4)
    return {"reject_at": reject_at, "review_at": review_at}


def per_source_metrics(
    records: Sequence[LabeledRecord], proba: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 per source (where the label set allows)."""
    out: dict[str, dict[str, float]] = {}
    sources = sorted({r.source or "unknown" for r in records})
    labels = list(labels)
    for source in sources:
        idx = [i for i, r in enumerate(records) if (r.source or "unknown") == source]
        y = [labels.index(label) for label in gold_labels(records[i] for i in idx)]
        pred = proba[idx].argmax(axis=1)
        present = sorted(set(y))
        out[source] = {
            "n": len(idx),
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        }
    return out


def context_variants(records: Sequence[LabeledRecord]) -> dict[str, list[LabeledRecord]]:
    """Real (comment, own article) on-topic pairs as title+body, title only and no article."""
    pairs = [
        r
        for r in records
        if r.label == ON_TOPIC
        and r.source in REAL_ON_TOPIC_PAIR_SOURCES
        and r.article_title
        and r.article_text
    ]
    return {
        "title_and_body": pairs,
        "title_only": [replace(r, article_text=None) for r in pairs],
        "no_article": [replace(r, article_title=None, article_text=None) for r in pairs],
    }


def false_off_topic_rates(
    predict_proba: Any, records: Sequence[LabeledRecord], labels: Sequence[str], thresholds: Thresholds
) -> dict[str, dict[str, float]]:
    """Share of real on-topic pairs called off_topic (argmax) or rejected, per context kind."""
    out: dict[str, dict[str, float]] = {}
    labels = list(labels)
    for kind, variant in context_variants(records).items():
        if not variant:
            continue
        proba = predict_proba(to_frame(variant))
        predicted = [labels[k] for k in proba.argmax(axis=1)]
        rejected_off = rejected_any = 0
        for row in proba:
            action, label = decide(dict(zip(labels, row, strict=True)), thresholds)
            if action == REJECT:
                rejected_any += 1
                rejected_off += label == OFF_TOPIC
        n = len(variant)
        out[kind] = {
            "n": n,
            "predicted_off_topic": sum(p == OFF_TOPIC for p in predicted) / n,
            "rejected_off_topic": rejected_off / n,
            "rejected_any": rejected_any / n,
        }
    return out


def off_topic_auc(
    records: Sequence[LabeledRecord], proba: np.ndarray, labels: Sequence[str], sources: Sequence[str]
) -> float | None:
    """ROC-AUC of p(off_topic) separating off_topic from on_topic pairs of the given sources."""
    labels = list(labels)
    if OFF_TOPIC not in labels:
        return None
    k = labels.index(OFF_TOPIC)
    idx = [i for i, r in enumerate(records) if r.source in sources and r.label in (ON_TOPIC, OFF_TOPIC)]
    y = [records[i].label == OFF_TOPIC for i in idx]
    if len(set(y)) < 2:
        return None
    return float(roc_auc_score(y, proba[idx, k]))
