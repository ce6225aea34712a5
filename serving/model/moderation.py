"""The champion at run time: a fitted Pipeline and its metadata that scores, decides and explains."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.features.article_cache import ArticleCache, ArticleEntry
from serving.features.prepare import PreparedComments
from serving.features.sparse_rows import Rows
from serving.model.bundle import MODEL_FILE, BundleError, load_verified_model, read_bundle_metadata
from serving.model.composed import apply_heads, apply_relevance
from serving.model.decisions import Thresholds, decide
from serving.model.explain import Reason, Span, display_gram, linear_view, signal_reasons, spans_from_ngrams
from serving.model.relevance import ABOUT_ELSE, ABOUT_THIS, GENERIC, NO_ARTICLE, OTHER_SCRIPT, Relations
from serving.schema import ACCEPTABLE_LABEL, DEFAULT_MODEL_NAME, OFF_TOPIC
from serving.text.normalize import normalize

PREPROCESS_STEP = "prep"
FEATURES_STEP = "features"
CLASSIFIER_STEP = "clf"

# What the relevance component said, as a moderator reads it in the reasons.
RELATION_DETAILS = {
    ABOUT_THIS: "nothing shows it is about something else than this article",
    GENERIC: "a generic reaction (thanks, prayer, congratulation, reply to a reader): fits any article",
    ABOUT_ELSE: "about something else than this article",
    NO_ARTICLE: "no article title or text was sent: off-topic cannot be judged",
    OTHER_SCRIPT: "comment and article are in different scripts: off-topic judged from the comment alone",
}


@dataclass(frozen=True)
class Scored:
    """One comment's result: scores per label, the decision and its explanation.

    `label` is the label Raqib gives the comment, the same as the decision's: the label that drove
    a review or reject, the acceptable label when approved. `relation` is the relevance
    component's verdict (None for models without one).
    """

    label: str
    scores: dict[str, float]
    action: str
    decided_label: str | None
    reasons: list[Reason] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    relation: str | None = None


@dataclass(frozen=True)
class CommentInput:
    """What the model reads about one comment."""

    text: str
    article_title: str | None = None
    article_text: str | None = None
    # Who the article is (site and id), when the caller knows: a changed text under the same id
    # replaces that article's cached features at once instead of waiting to age out.
    article_key: str | None = None

    def as_row(self) -> dict[str, str | None]:
        """The canonical model-input columns as a dict."""
        return {"text": self.text, "article_title": self.article_title, "article_text": self.article_text}


class _Part:
    """One fitted Pipeline of the model (the base, or a label's head) and its fast scorer."""

    def __init__(self, pipeline: Any, n_classes: int, label: str | None = None):
        self.pipeline = pipeline
        self.label = label  # None for the base; the label a head decides otherwise
        self.n_classes = n_classes
        self.features = pipeline.named_steps[FEATURES_STEP]
        self.classifier = pipeline.named_steps[CLASSIFIER_STEP]
        self.linear = _linear_scorer(self.classifier, n_classes)
        self.weights: np.ndarray | None = None
        self.explainable = True
        self.ngram_layout: list[tuple[Any, int, int]] | None = None

    def rows(self, prepared: PreparedComments) -> Any:
        """The part's feature rows: `Rows` where the features can give them without scipy."""
        if hasattr(self.features, "rows"):
            return self.features.rows(prepared)
        return self.features.transform(prepared)

    def proba(self, matrix: Any) -> np.ndarray:
        if self.linear is not None:
            return self.linear.proba(matrix)
        if isinstance(matrix, Rows):
            matrix = matrix.to_csr()
        return np.asarray(self.classifier.predict_proba(matrix))


@dataclass(frozen=True)
class _Forward:
    """One batch through the model: prepared text, each part's features, the probabilities."""

    prepared: PreparedComments
    matrices: dict[str | None, Any]
    probabilities: np.ndarray
    relations: Relations | None = None


class ModerationModel:
    """A fitted model plus its metadata: the unit that serving loads and swaps.

    The model is a Pipeline over every label, or a ComposedClassifier: that base plus heads that
    decide one label each (serving/model/composed.py); both score through the same fast path.
    """

    def __init__(self, pipeline: Any, metadata: Mapping[str, Any], article_cache: ArticleCache | None = None):
        self.pipeline = pipeline
        # Every block's article-side features, once per article (not per comment), across calls.
        self.article_cache = article_cache if article_cache is not None else ArticleCache()
        self.metadata = dict(metadata)
        self.labels: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)
        base = getattr(pipeline, "base", pipeline)
        self._base = _Part(base, len(self.labels))
        self._heads = [
            _Part(head, 2, label) for label, head in (getattr(pipeline, "heads", None) or {}).items()
        ]
        self._relevance = getattr(pipeline, "relevance", None)
        # One scoring call at a time per model: the feature code is many small numpy calls, and
        # threads interleaving them (a server's thread pool under load) spend their time handing
        # the GIL over rather than scoring.
        self._score_lock = threading.Lock()
        thresholds = self.metadata.get("thresholds", {})
        self.thresholds = Thresholds(
            reject_at={k: float(v) for k, v in thresholds.get("reject_at", {}).items()},
            review_at={k: float(v) for k, v in thresholds.get("review_at", {}).items()},
            final=frozenset(str(label) for label in self.metadata.get("final_thresholds", [])),
        )
        self.name = str(self.metadata.get("name", DEFAULT_MODEL_NAME))
        self.version = str(self.metadata.get("version", "dev"))

    @classmethod
    def from_bundle(
        cls, bundle_dir: str | Path, article_cache: ArticleCache | None = None
    ) -> ModerationModel:
        """Load a bundle directory, verifying the pickle's sha256 before unpickling it."""
        bundle_dir = Path(bundle_dir)
        metadata = read_bundle_metadata(bundle_dir)
        model_path = bundle_dir / MODEL_FILE
        if not model_path.is_file():
            raise BundleError(f"no {MODEL_FILE} in {bundle_dir}")
        pipeline = load_verified_model(model_path, metadata)
        if not hasattr(pipeline, "predict_proba") or not hasattr(pipeline, "classes_"):
            raise BundleError(f"{model_path} is not a classifier pipeline")
        return cls(pipeline, metadata, article_cache)

    # --- scoring -------------------------------------------------------------------------------

    def _prepare(self, items: Sequence[CommentInput]) -> tuple[PreparedComments, list[ArticleEntry]]:
        """The batch normalised once, each row pointing at its article's cache entry (normalised
        there once per article); also the entries this batch created."""
        titles = [item.article_title or "" for item in items]
        bodies = [item.article_text or "" for item in items]
        entries, created = self.article_cache.entries(titles, bodies, [item.article_key for item in items])
        raw = tuple(item.text for item in items)
        prepared = PreparedComments(
            raw_text=raw,
            text=tuple(normalize(text) for text in raw),
            title=tuple(entry.title if entry is not None else "" for entry in entries),
            body=tuple(entry.body if entry is not None else "" for entry in entries),
            articles=tuple(entries),
        )
        return prepared, created

    def _forward(self, items: Sequence[CommentInput]) -> _Forward:
        prepared, created = self._prepare(items)
        forward = self._forward_prepared(prepared)
        self.article_cache.settle(created)
        return forward

    def _forward_prepared(self, prepared: PreparedComments) -> _Forward:
        matrices: dict[str | None, Any] = {None: self._base.rows(prepared)}
        probabilities = self._base.proba(matrices[None])
        if self._heads:
            heads = {}
            for head in self._heads:
                matrices[head.label] = head.rows(prepared)
                heads[str(head.label)] = head.proba(matrices[head.label])[:, 1]
            probabilities = apply_heads(probabilities, self.labels, heads)
        relations = None
        if self._relevance is not None:
            relations = self._relevance.relations(prepared)
            probabilities = apply_relevance(probabilities, self.labels, relations.off_topic)
        return _Forward(prepared, matrices, probabilities, relations)

    def predict_proba(self, items: Sequence[CommentInput]) -> np.ndarray:
        """Probabilities (rows × labels) for a batch, in `self.labels` order."""
        with self._score_lock:
            return self._forward(items).probabilities

    def score(
        self,
        items: Sequence[CommentInput],
        thresholds: Sequence[Thresholds] | None = None,
        explain: bool = True,
    ) -> list[Scored]:
        """Score, decide and (optionally) explain a batch in one vectorised pass."""
        if not items:
            return []
        with self._score_lock:
            return self._score(items, thresholds, explain)

    def _score(
        self, items: Sequence[CommentInput], thresholds: Sequence[Thresholds] | None, explain: bool
    ) -> list[Scored]:
        forward = self._forward(items)
        probabilities = forward.probabilities
        results = []
        for i, item in enumerate(items):
            scores = {
                label: round(float(p), 6) for label, p in zip(self.labels, probabilities[i], strict=True)
            }
            policy = thresholds[i] if thresholds is not None else self.thresholds
            action, decided = decide(scores, policy)
            relation = str(forward.relations.relation[i]) if forward.relations is not None else None
            reasons: list[Reason] = []
            spans: list[Span] = []
            if explain:
                reasons, spans = self._explain(item, forward, i, decided, scores)
                if relation is not None:
                    detail = RELATION_DETAILS[relation]
                    reasons.insert(0, Reason("relation", detail, scores.get(OFF_TOPIC, 0.0)))
            results.append(
                Scored(
                    label=decided or ACCEPTABLE_LABEL,
                    scores=scores,
                    action=action,
                    decided_label=decided,
                    reasons=reasons,
                    spans=spans,
                    relation=relation,
                )
            )
        return results

    # --- explanations --------------------------------------------------------------------------

    def _part_for(self, target: str) -> _Part:
        """The part whose weights explain `target`: its head if it has one, else the base."""
        return next((head for head in self._heads if head.label == target), self._base)

    @staticmethod
    def _explainer(part: _Part) -> np.ndarray | None:
        if not part.explainable:
            return None
        if part.weights is None:
            weights = linear_view(part.classifier, part.n_classes)
            if weights is None:
                part.explainable = False
                return None
            part.weights = weights
        return part.weights

    @staticmethod
    def _ngram_blocks(part: _Part) -> list[tuple[Any, int, int]]:
        """(transformer, first column, width) of the n-gram blocks, for naming contributions."""
        if part.ngram_layout is None:
            union = part.features
            layout = union.block_layout() if hasattr(union, "block_layout") else []
            part.ngram_layout = [
                (transformer, offset, width)
                for _, transformer, offset, width in layout
                if hasattr(transformer, "explain_names")
                or (
                    hasattr(transformer, "feature_names_")
                    and getattr(transformer, "analyzer", None) in ("char", "char_wb", "word")
                )
            ]
        return part.ngram_layout

    def _ngram_names(
        self, part: _Part, columns: np.ndarray, prepared: PreparedComments, row: int
    ) -> list[str | None]:
        """The n-gram behind each feature column of this comment (None for non-n-gram features)."""
        text = prepared.text[row]
        names: list[str | None] = [None] * len(columns)
        for transformer, offset, width in self._ngram_blocks(part):
            inside = np.flatnonzero((columns >= offset) & (columns < offset + width))
            if not len(inside):
                continue
            if hasattr(transformer, "explain_names"):
                # The grams the features hashed for this row, when the batch kept them: not hashed again.
                found = transformer.row_grams(prepared, row) if hasattr(transformer, "row_grams") else None
                by_column = transformer.explain_names(text, (columns[inside] - offset).tolist(), found=found)
                for i in inside.tolist():
                    names[i] = by_column.get(int(columns[i]) - offset)
            else:
                for i in inside.tolist():
                    names[i] = str(transformer.feature_names_[int(columns[i]) - offset])
        return names

    def _explain(
        self,
        item: CommentInput,
        forward: _Forward,
        row: int,
        target: str | None,
        scores: Mapping[str, float],
    ) -> tuple[list[Reason], list[Span]]:
        prepared = forward.prepared
        reasons = signal_reasons(prepared, row)
        spans: list[Span] = []
        relation = forward.relations.relation[row] if forward.relations is not None else None
        if target is None or (target == OFF_TOPIC and relation not in (None, OTHER_SCRIPT)):
            # off_topic from the relevance component is explained by its relation reason: the
            # comment's words alone do not make it off-topic, the article does.
            return reasons, spans
        part = self._part_for(target)
        weights = self._explainer(part)
        if weights is None:
            return reasons, spans
        k = 1 if part.label is not None else self.labels.index(target)
        matrix = forward.matrices[part.label]
        begin, end = matrix.indptr[row], matrix.indptr[row + 1]
        columns, values = matrix.indices[begin:end], matrix.data[begin:end]
        contributions = values * weights[k, columns]
        order = np.argsort(-contributions)[:40]
        order = order[contributions[order] > 0]
        grams = self._ngram_names(part, columns[order], prepared, row)
        ngram_weights = [
            (gram, float(value))
            for gram, value in zip(grams, contributions[order].tolist(), strict=True)
            if gram is not None
        ]
        shown: set[str] = set()
        for gram, value in ngram_weights:
            if len(reasons) >= 8:
                break
            display = display_gram(gram.strip())
            if display is None or display in shown:
                continue
            if any(display in s or s in display for s in shown):
                continue
            shown.add(display)
            reasons.append(
                Reason(kind="ngram", detail=f"'{display}' points to {target}", weight=round(value, 4))
            )
        spans = spans_from_ngrams(item.text, ngram_weights, scores.get(target, 0.0))
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
        """Class probabilities for feature rows (`Rows` or a CSR matrix)."""
        product = matrix.dot_dense(self.weights) if isinstance(matrix, Rows) else matrix @ self.weights
        logits = np.asarray(product, dtype=np.float64) + self.intercept
        if self.binary:
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits


def _linear_scorer(classifier: Any, n_classes: int) -> _LinearScorer | None:
    """A fast scorer for a fitted LogisticRegression, checked against its predict_proba; else None."""
    linear_kinds = ("LogisticRegression", "SGDClassifier")  # SGD only with log loss: checked below
    if type(classifier).__name__ not in linear_kinds or not hasattr(classifier, "coef_"):
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
