"""The champion at run time: load a verified bundle, score comments, decide, explain."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.features.ngrams import PreparedComments, article_script
from serving.text.normalize import (
    EMAIL_TOKEN,
    MASK_TOKENS,
    PHONE_TOKEN,
    URL_TOKEN,
    dominant_script,
    normalize_with_offsets,
)
from serving.schema import ACCEPTABLE_LABEL

PREPROCESS_STEP = "prep"
FEATURES_STEP = "features"
CLASSIFIER_STEP = "clf"

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"

APPROVE, REVIEW, REJECT = "approve", "review", "reject"
NEVER_REJECT = 1.0  # a reject_at at or above this never auto-rejects (thresholds.json, site settings)
ACTIONS = (APPROVE, REVIEW, REJECT)


class BundleError(RuntimeError):
    """A model bundle that is missing, corrupt or fails its checksum."""


@dataclass(frozen=True)
class Thresholds:
    """Per-label probability at which a comment is rejected, and at which it goes to review."""

    reject_at: Mapping[str, float]
    review_at: Mapping[str, float]

    def with_overrides(
        self,
        reject_at: Mapping[str, float] | None = None,
        review_at: Mapping[str, float] | None = None,
    ) -> Thresholds:
        """A copy with some labels' thresholds replaced (per-site settings)."""
        return Thresholds(
            reject_at={**self.reject_at, **(reject_at or {})},
            review_at={**self.review_at, **(review_at or {})},
        )


def decide(
    scores: Mapping[str, float], thresholds: Thresholds, acceptable: str = ACCEPTABLE_LABEL
) -> tuple[str, str | None]:
    """Action for one comment, and the label that drove it (None when approved)."""
    risky = sorted(
        ((label, p) for label, p in scores.items() if label != acceptable),
        key=lambda item: item[1],
        reverse=True,
    )
    for label, p in risky:
        # reject_at >= 1.0 means "never auto-reject": a saturated probability (1.0 after
        # rounding) must not slip through the sentinel.
        reject_at = thresholds.reject_at.get(label, math.inf)
        if reject_at < NEVER_REJECT and p >= reject_at:
            return REJECT, label
    for label, p in risky:
        if p >= thresholds.review_at.get(label, math.inf):
            return REVIEW, label
    # A comment the model thinks is most likely not acceptable is never waved through, whatever
    # the recall-derived review threshold says: it goes to a moderator.
    if risky and risky[0][1] > scores.get(acceptable, 0.0):
        return REVIEW, risky[0][0]
    return APPROVE, None


@dataclass(frozen=True)
class Reason:
    """Why the model leaned one way: an n-gram, a signal or the article relation."""

    kind: str
    detail: str
    weight: float


@dataclass(frozen=True)
class Span:
    """A flagged stretch of the ORIGINAL comment text, [begin, end) in code points."""

    begin: int
    end: int
    score: float


@dataclass(frozen=True)
class Scored:
    """One comment's result: scores per label, the decision and its explanation."""

    label: str
    scores: dict[str, float]
    action: str
    decided_label: str | None
    reasons: list[Reason] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)


@dataclass(frozen=True)
class CommentInput:
    """What the model reads about one comment."""

    text: str
    article_title: str | None = None
    article_text: str | None = None

    def as_row(self) -> dict[str, str | None]:
        """The canonical model-input columns as a dict."""
        return {"text": self.text, "article_title": self.article_title, "article_text": self.article_text}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_bundle_metadata(bundle_dir: str | Path) -> dict[str, Any]:
    """The bundle's metadata.json, or BundleError saying what is wrong."""
    path = Path(bundle_dir) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"no {METADATA_FILE} in {bundle_dir}") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"unreadable {path}: {exc}") from None
    for key in ("name", "version", "labels", "thresholds", "sha256"):
        if key not in metadata:
            raise BundleError(f"{path} lacks '{key}'")
    return metadata


def _linear_view(classifier: Any, n_classes: int) -> np.ndarray | None:
    """Per-class feature weights of a linear classifier, for explanations (None if unknown)."""
    if hasattr(classifier, "calibrated_classifiers_"):
        parts = [_linear_view(c.estimator, n_classes) for c in classifier.calibrated_classifiers_]
        parts_ok = [p for p in parts if p is not None]
        return np.mean(parts_ok, axis=0) if parts_ok else None
    if hasattr(classifier, "coef_"):
        coef = np.asarray(classifier.coef_, dtype=np.float32)
        if coef.shape[0] == 1 and n_classes == 2:
            coef = np.vstack([-coef[0], coef[0]])
        return coef
    if hasattr(classifier, "feature_log_prob_"):
        flp = np.asarray(classifier.feature_log_prob_, dtype=np.float32)
        # ComplementNB's log-probs are of the complement: lower means more of the class.
        return -(flp - flp.mean(axis=0, keepdims=True))
    return None


class ModerationModel:
    """A fitted Pipeline plus its metadata: the unit that serving loads and swaps."""

    def __init__(self, pipeline: Any, metadata: Mapping[str, Any]):
        self.pipeline = pipeline
        self.metadata = dict(metadata)
        self.labels: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)
        thresholds = self.metadata.get("thresholds", {})
        self.thresholds = Thresholds(
            reject_at={k: float(v) for k, v in thresholds.get("reject_at", {}).items()},
            review_at={k: float(v) for k, v in thresholds.get("review_at", {}).items()},
        )
        self.name = str(self.metadata.get("name", "raqib-moderator"))
        self.version = str(self.metadata.get("version", "dev"))
        self._weights: np.ndarray | None = None
        self._explainable = True
        self._linear = _linear_scorer(pipeline.named_steps[CLASSIFIER_STEP], len(self.labels))

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path) -> ModerationModel:
        """Load a bundle directory, verifying the pickle's sha256 before unpickling it."""
        import joblib

        bundle_dir = Path(bundle_dir)
        metadata = read_bundle_metadata(bundle_dir)
        model_path = bundle_dir / MODEL_FILE
        if not model_path.is_file():
            raise BundleError(f"no {MODEL_FILE} in {bundle_dir}")
        actual = sha256_file(model_path)
        if actual != metadata["sha256"]:
            raise BundleError(
                f"{model_path} sha256 {actual[:12]}… does not match metadata "
                f"{str(metadata['sha256'])[:12]}…; refusing to unpickle"
            )
        try:
            pipeline = joblib.load(model_path)
        except Exception as exc:  # a truncated or foreign pickle raises many kinds
            raise BundleError(f"cannot unpickle {model_path}: {exc.__class__.__name__}: {exc}") from None
        if not hasattr(pipeline, "predict_proba") or not hasattr(pipeline, "classes_"):
            raise BundleError(f"{model_path} is not a classifier pipeline")
        return cls(pipeline, metadata)

    # --- scoring -------------------------------------------------------------------------------

    def _features(self, rows: Sequence[Mapping[str, Any]]) -> tuple[PreparedComments, Any]:
        prepared = self.pipeline.named_steps[PREPROCESS_STEP].transform(rows)
        matrix = self.pipeline.named_steps[FEATURES_STEP].transform(prepared)
        return prepared, matrix

    def _proba(self, matrix: Any) -> np.ndarray:
        if self._linear is not None:
            return self._linear.proba(matrix)
        return np.asarray(self.pipeline.named_steps[CLASSIFIER_STEP].predict_proba(matrix))

    def predict_proba(self, items: Sequence[CommentInput]) -> np.ndarray:
        """Probabilities (rows × labels) for a batch, in `self.labels` order."""
        _, matrix = self._features([item.as_row() for item in items])
        return self._proba(matrix)

    def score(
        self,
        items: Sequence[CommentInput],
        thresholds: Sequence[Thresholds] | None = None,
        explain: bool = True,
    ) -> list[Scored]:
        """Score, decide and (optionally) explain a batch in one vectorised pass."""
        if not items:
            return []
        prepared, matrix = self._features([item.as_row() for item in items])
        probabilities = self._proba(matrix)
        results = []
        for i, item in enumerate(items):
            scores = {
                label: round(float(p), 6) for label, p in zip(self.labels, probabilities[i], strict=True)
            }
            policy = thresholds[i] if thresholds is not None else self.thresholds
            action, decided = decide(scores, policy)
            label = self.labels[int(np.argmax(probabilities[i]))]
            reasons: list[Reason] = []
            spans: list[Span] = []
            if explain:
                target = decided or (label if label != ACCEPTABLE_LABEL else None)
                reasons, spans = self._explain(item, prepared, matrix, i, target, scores)
            results.append(
                Scored(
                    label=label,
                    scores=scores,
                    action=action,
                    decided_label=decided,
                    reasons=reasons,
                    spans=spans,
                )
            )
        return results

    # --- explanations --------------------------------------------------------------------------

    def _explainer(self) -> np.ndarray | None:
        if not self._explainable:
            return None
        if self._weights is None:
            weights = _linear_view(self.pipeline.named_steps[CLASSIFIER_STEP], len(self.labels))
            if weights is None:
                self._explainable = False
                return None
            self._weights = weights
        return self._weights

    def _ngram_blocks(self) -> list[tuple[Any, int, int]]:
        """(transformer, first column, width) of the n-gram blocks, for naming contributions."""
        blocks = self.__dict__.get("_ngram_layout")
        if blocks is None:
            union = self.pipeline.named_steps[FEATURES_STEP]
            layout = union.block_layout() if hasattr(union, "block_layout") else []
            blocks = [
                (transformer, offset, width)
                for _, transformer, offset, width in layout
                if hasattr(transformer, "explain_names")
                or (
                    hasattr(transformer, "feature_names_")
                    and getattr(transformer, "analyzer", None) in ("char", "char_wb", "word")
                )
            ]
            self.__dict__["_ngram_layout"] = blocks
        return blocks

    def _ngram_names(self, columns: np.ndarray, text: str) -> list[str | None]:
        """The n-gram behind each feature column of this comment (None for non-n-gram features)."""
        names: list[str | None] = [None] * len(columns)
        for transformer, offset, width in self._ngram_blocks():
            inside = np.flatnonzero((columns >= offset) & (columns < offset + width))
            if not len(inside):
                continue
            if hasattr(transformer, "explain_names"):
                by_column = transformer.explain_names(text, (columns[inside] - offset).tolist())
                for i in inside.tolist():
                    names[i] = by_column.get(int(columns[i]) - offset)
            else:
                for i in inside.tolist():
                    names[i] = str(transformer.feature_names_[int(columns[i]) - offset])
        return names

    def _explain(
        self,
        item: CommentInput,
        prepared: PreparedComments,
        matrix: Any,
        row: int,
        target: str | None,
        scores: Mapping[str, float],
    ) -> tuple[list[Reason], list[Span]]:
        reasons = _signal_reasons(prepared, row)
        weights = self._explainer()
        spans: list[Span] = []
        if weights is None or target is None:
            return reasons, spans
        k = self.labels.index(target)
        begin, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns, values = matrix.indices[begin:end], matrix.data[begin:end]
        contributions = values * weights[k, columns]
        order = np.argsort(-contributions)[:40]
        order = order[contributions[order] > 0]
        grams = self._ngram_names(columns[order], prepared.text[row])
        ngram_weights = [
            (gram, float(value))
            for gram, value in zip(grams, contributions[order].tolist(), strict=True)
            if gram is not None
        ]
        shown: set[str] = set()
        for gram, value in ngram_weights:
            display = _display_gram(gram.strip())
            if len(reasons) >= 8 or display is None or display in shown:
                continue
            if any(display in s or s in display for s in shown):
                continue
            shown.add(display)
            reasons.append(
                Reason(kind="ngram", detail=f"'{display}' points to {target}", weight=round(value, 4))
            )
        spans = _spans_from_ngrams(item.text, ngram_weights, scores.get(target, 0.0))
        return reasons, spans


class _LinearScorer:
    """A logistic regression's predict_proba as one sparse × dense product, without sklearn's checks.

    sklearn validates its input on every call, which cost more than the arithmetic when serving
    scores one comment; it is used only when it reproduces the classifier's own probabilities.
    """

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, binary: bool):
        self.weights = np.ascontiguousarray(coef.T, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.binary = binary

    def proba(self, matrix: Any) -> np.ndarray:
        """Class probabilities for a CSR feature matrix."""
        logits = np.asarray(matrix @ self.weights, dtype=np.float64) + self.intercept
        if self.binary:
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits


def _linear_scorer(classifier: Any, n_classes: int) -> _LinearScorer | None:
    """A fast scorer for a fitted LogisticRegression, checked against its predict_proba; else None."""
    if type(classifier).__name__ != "LogisticRegression" or not hasattr(classifier, "coef_"):
        return None
    import scipy.sparse as sp

    coef = np.asarray(classifier.coef_)
    scorer = _LinearScorer(coef, classifier.intercept_, binary=coef.shape[0] == 1 and n_classes == 2)
    probe = sp.random(4, coef.shape[1], density=min(1.0, 64 / coef.shape[1]), format="csr", random_state=7)
    probe = probe.astype(np.float32)
    try:
        expected = np.asarray(classifier.predict_proba(probe))
    except Exception:  # an exotic estimator state: keep sklearn's own path
        return None
    if expected.shape != (4, n_classes) or not np.allclose(scorer.proba(probe), expected, atol=1e-5):
        return None
    return scorer


_MASK_NAMES = {URL_TOKEN: "a link", PHONE_TOKEN: "a phone number", EMAIL_TOKEN: "an e-mail address"}


def _display_gram(gram: str) -> str | None:
    """How an n-gram reads to a moderator (masks by name); None for fragments too short to mean much."""
    for token, name in _MASK_NAMES.items():
        if token in gram or (len(gram) >= 3 and gram in token):
            return f"<{name}>"
    if gram.startswith("xx") or any(gram in token for token in MASK_TOKENS):
        return None  # a fragment of a mask token that names nothing by itself
    if len(gram) < 3 and " " not in gram:
        return None
    return gram


def _signal_reasons(prepared: PreparedComments, row: int) -> list[Reason]:
    text = prepared.text[row]
    tokens = text.split()
    reasons = []
    for token, name in _MASK_NAMES.items():
        if token in tokens:
            reasons.append(Reason(kind="signal", detail=f"contains {name}", weight=1.0))
    parts = [part for part in (prepared.title[row], prepared.body[row]) if part]
    if parts:
        comment_script = dominant_script(text)
        scripts = {article_script(part) for part in parts}
        names = {"latin": "English/Latin-script", "arabic": "Arabic"}
        article = next(iter(scripts)) if len(scripts) == 1 else "mixed"
        if comment_script in names and article in names and comment_script != article:
            reasons.append(
                Reason(
                    kind="context",
                    detail=f"comment is {names[comment_script]}, article is {names[article]}",
                    weight=0.5,
                )
            )
    return reasons


_WORD = re.compile(r"\S+")


def _spans_from_ngrams(
    original: str, ngram_weights: Sequence[tuple[str, float]], probability: float
) -> list[Span]:
    """Project the n-grams that pushed the score onto whole words of the original text."""
    if not ngram_weights or not original:
        return []
    normalized = normalize_with_offsets(original)
    text = normalized.text
    heat = np.zeros(len(text), dtype=np.float32)
    for gram, weight in ngram_weights:
        needle = gram.strip()
        if not needle:
            continue
        start = text.find(needle)
        while start != -1:
            heat[start : start + len(needle)] += weight
            start = text.find(needle, start + 1)
    if not heat.any():
        return []
    # Score words, not characters: a moderator reads "واتساب", not "تسا".
    bounds = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    starts = np.fromiter((b for b, _ in bounds), dtype=np.int64, count=len(bounds))
    ends = np.fromiter((e for _, e in bounds), dtype=np.int64, count=len(bounds))
    cumulative = np.concatenate([[0.0], np.cumsum(heat, dtype=np.float64)])
    means = ((cumulative[ends] - cumulative[starts]) / (ends - starts)).tolist()
    words = [(b, e, score) for (b, e), score in zip(bounds, means, strict=True)]
    top = max(score for _, _, score in words)
    cutoff = 0.4 * top
    spans: list[Span] = []
    run: list[tuple[int, int, float]] = []
    for word in [*words, (len(text), len(text), -1.0)]:
        if word[2] >= cutoff:
            run.append(word)
            continue
        if run:
            begin, end = normalized.original_span(run[0][0], run[-1][1])
            peak = max(score for _, _, score in run) / top
            spans.append(Span(begin=begin, end=end, score=round(peak * probability, 4)))
            run = []
    return spans[:10]
