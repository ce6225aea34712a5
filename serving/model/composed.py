"""A base model over every label plus dedicated heads that decide some labels on their own.

The base Pipeline scores all labels from the comment and its article. A head is a binary Pipeline
trained for one label on data chosen for that label alone (for `abusive`: corpora with both
classes from the same source, across dialects, and real published comments). The rule that
combines them, `apply_heads`:

    p(label)  = the head's probability
    p(other)  = base p(other) × (1 − p(label)) / (1 − base p(label))   for every other label

so the head alone says how likely the label is, and the base model's view of the remaining labels
keeps its proportions (an insult the base model called half spam, half abusive stays "not spam"
once the head has spoken). Probabilities still sum to one.

A relevance component (serving/model/relevance.py) decides `off_topic` by a second rule,
`apply_relevance`, applied after the heads: the content labels (spam, abusive) keep their
probabilities, and the rest — the mass of "acceptable content" — is split between `on_topic` and
`off_topic` by the relevance score r:

    p(off_topic) = (p(on_topic) + p(off_topic)) × r,   p(on_topic) = (p(on_topic) + p(off_topic)) × (1 − r)

so spam is spam and abuse is abuse under any article, and only a comment that is neither can be
off-topic; r is 0 for a generic reaction and for a comment sent without its article, and NaN (the
base model's split stands) where the component cannot compare, a comment in another script.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from serving.features.prepare import CommentPreprocessor
from serving.schema import OFF_TOPIC, ON_TOPIC


def apply_heads(base: np.ndarray, labels: tuple[str, ...], heads: Mapping[str, np.ndarray]) -> np.ndarray:
    """Combine base probabilities (rows × labels) with each head's p(label) (rows,) by the rule above."""
    # Row by row in Python floats (the same float64 operations, in the same order, as elementwise
    # numpy): a dozen numpy calls cost more than the arithmetic for the one comment a request scores.
    rows = np.asarray(base, dtype=np.float64).tolist()
    for label, head in heads.items():
        k = labels.index(label)
        others = [j for j in range(len(labels)) if j != k]
        for row, p in zip(rows, np.asarray(head, dtype=np.float64).tolist(), strict=True):
            p = min(max(p, 0.0), 1.0)
            rest = 1.0 - row[k]
            factor = (1.0 - p) / rest if rest > 1e-12 else 0.0
            for j in others:
                row[j] *= factor
            if rest <= 1e-12:
                # The base model was certain of the label the head now doubts: the freed mass goes
                # to the first other label (the acceptable one, by the label order of every model).
                for j in others:
                    row[j] = 0.0
                row[others[0]] = 1.0 - p
            row[k] = p
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(labels))


def apply_relevance(
    probabilities: np.ndarray,
    labels: tuple[str, ...],
    off_topic: np.ndarray,
    on_label: str = ON_TOPIC,
    off_label: str = OFF_TOPIC,
) -> np.ndarray:
    """Split the acceptable-content mass between on_topic and off_topic by r (rows,), as above; a
    NaN r (the component has no say: e.g. a comment in another script than its article) keeps the
    base model's split."""
    on, off = labels.index(on_label), labels.index(off_label)
    rows = np.asarray(probabilities, dtype=np.float64).tolist()
    for row, r in zip(rows, np.asarray(off_topic, dtype=np.float64).tolist(), strict=True):
        if math.isnan(r):
            continue
        r = min(max(r, 0.0), 1.0)
        mass = row[on] + row[off]
        row[off] = mass * r
        row[on] = mass * (1.0 - r)
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(labels))


class ComposedClassifier(ClassifierMixin, BaseEstimator):
    """`base` (a Pipeline over every label) with `heads` ({label: binary Pipeline}) that override it.

    Behaves as one classifier over canonical DataFrames (fit, predict_proba, classes_), so the
    training, evaluation and registry code treats it like the single Pipeline it replaces.
    """

    def __init__(self, base: Any, heads: Mapping[str, Any] | None = None, relevance: Any = None):
        self.base = base
        self.heads = heads
        self.relevance = relevance

    def fit(self, X: Any, y: Any, **fit_params: Any) -> ComposedClassifier:
        """Fit the base on every label and each head on label-vs-rest of the same rows.

        Training proper builds each head from its own data (training.experiment.heads); this
        plain fit exists so that a clone of the model can be refitted on one frame. A relevance
        component is refitted the same way (off_topic vs the rest, its spaces learned from the
        frame's own comments grouped by article title) only when it is not fitted yet.
        """
        labels = np.asarray(y)
        self.base.fit(X, labels, **fit_params)
        for label, head in (self.heads or {}).items():
            head.fit(X, (labels == label).astype(np.int8))
        if self.relevance is not None and not hasattr(self.relevance, "linear_"):
            self.relevance.fit(X, (labels == OFF_TOPIC).astype(np.int8))
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Bundles pickled before the relevance component existed have no such attribute.
        state.setdefault("relevance", None)
        super().__setstate__(state)

    @property
    def classes_(self) -> np.ndarray:
        """The base model's labels."""
        return np.asarray(self.base.classes_)

    @property
    def named_steps(self) -> Any:
        """The base Pipeline's steps (preprocess, features, classifier)."""
        return self.base.named_steps

    @property
    def steps(self) -> list[tuple[str, Any]]:
        """The base Pipeline's steps."""
        steps: list[tuple[str, Any]] = self.base.steps
        return steps

    def head_probabilities(self, X: Any) -> dict[str, np.ndarray]:
        """Each head's p(label) for the rows of X."""
        return {label: np.asarray(head.predict_proba(X))[:, 1] for label, head in (self.heads or {}).items()}

    def predict_proba(self, X: Any) -> np.ndarray:
        """Base probabilities with every head applied, then the relevance rule (rows × classes_)."""
        # Normalised once: the base, each head and the relevance component all read the same
        # PreparedComments (each Pipeline's preprocessing step passes it through).
        X = CommentPreprocessor().transform(X)
        labels = tuple(str(c) for c in self.classes_)
        combined = apply_heads(np.asarray(self.base.predict_proba(X)), labels, self.head_probabilities(X))
        if self.relevance is not None:
            combined = apply_relevance(combined, labels, self.relevance.off_topic_scores(X))
        return combined

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label per row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
