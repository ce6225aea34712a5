"""The relevance component: is a comment about this article, a generic reaction, or about something else?

`RelevanceModel` reads relation features (serving/features/relevance.py) of a comment and its
article and says one of four relations:

- `about_this_article`: the comment talks about the story;
- `generic_reaction`: thanks, prayers, congratulations, a reply to another reader, a short
  emotional comment: words that readers use under every kind of article. Publishable anywhere;
- `about_something_else`: positive evidence that the comment is about another subject (its
  words belong to other stories than this one);
- `no_article`: the CMS sent no title and no body, so nothing says the comment is off-topic;
- `other_script`: a Latin-script comment under an Arabic article: the component's spaces cannot
  compare two languages, so it gives no score and the base model's own off_topic view stands.

Only `about_something_else` can make a comment `off_topic`. The model is one logistic regression
per context kind (title only; title and body: CMSs send either, and the same similarity means
different things in each), trained on real (comment, own article) pairs against the same comments
re-paired with other articles (CONSTRUCTED negatives; training/experiment/relevance.py), with a
threshold per context kind chosen out of fold so that a set share of real pairs would be held.

`off_topic_scores` maps that onto the product's scale: 0.5 at the context's threshold (so the
bundle's `off_topic` review_at is 0.5 in every context), 0 for generic reactions and for
comments without an article, NaN (no say) for `other_script`. The rule that mixes it with the
content labels is `apply_relevance` (serving/model/composed.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serving.features.prepare import CommentPreprocessor, PreparedComments
from serving.features.relevance import ArticleSide, RelevanceFeatures

ABOUT_THIS = "about_this_article"
GENERIC = "generic_reaction"
ABOUT_ELSE = "about_something_else"
NO_ARTICLE = "no_article"
OTHER_SCRIPT = "other_script"
RELATIONS = (ABOUT_THIS, GENERIC, ABOUT_ELSE, NO_ARTICLE, OTHER_SCRIPT)

TITLE, TITLE_BODY, NONE = "title", "title_body", "none"
CONTEXT_KINDS = (TITLE, TITLE_BODY)
REVIEW_AT = 0.5  # off_topic_scores put every context's threshold here
RELEVANCE_PART = "relevance"  # this component's slot in an article's cache entry


def context_kind(title: str, body: str) -> str:
    """What the CMS sent about the article: title and body, the title only, or nothing."""
    if body:
        return TITLE_BODY
    if title:
        return TITLE
    return NONE


@dataclass(frozen=True)
class Relations:
    """One batch's relations: per row the context kind, p(about something else) from the context's
    classifier, whether the comment is generic, the relation and the off_topic score."""

    context: np.ndarray
    p_about_else: np.ndarray
    generic: np.ndarray
    relation: np.ndarray
    off_topic: np.ndarray


class RelevanceModel(ClassifierMixin, BaseEstimator):
    """p(about something else | comment, article): one small model per context kind.

    - `features`: a RelevanceFeatures (cloned and fitted on the corpus in `fit`), or None for the
      default; one that is already fitted (has `feature_names_`) is used as it is, so
      cross-validation can share one extractor fitted on the corpus alone. `columns`: the feature
      names the classifiers read (None = all).
    - Per context kind, a logistic regression on standardised features, trained on that kind's
      non-generic rows (generic reactions are decided by rule). `thresholds_[kind]` is chosen on
      out-of-fold p of the real rows (label 0; folds grouped by `groups` = article) so that
      `target_held` of ALL real rows of the kind (generic ones are never held) would be held.
    - Generic: no topical word at all, or at most `generic_max_specific` specific word (rules
      compared in `make bench`, section "Relevance").

    Labels y: 1 = about something else (CONSTRUCTED by re-pairing, or a human's "irrelevant"),
    0 = the comment under its own article.
    """

    def __init__(
        self,
        features: Any = None,
        columns: Sequence[str] | None = None,
        C: float = 1.0,
        target_held: float = 0.04,
        threshold_folds: int = 3,
        generic_max_specific: int = 0,
        classifier: str = "logreg",
    ):
        self.features = features
        self.columns = columns
        self.C = C
        self.target_held = target_held
        self.threshold_folds = threshold_folds
        self.generic_max_specific = generic_max_specific
        self.classifier = classifier

    def _classifier(self) -> Any:
        if self.classifier == "boosting":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return make_pipeline(
                StandardScaler(),
                HistGradientBoostingClassifier(
                    max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=13
                ),
            )
        if self.classifier != "logreg":
            raise ValueError(f"unknown relevance classifier {self.classifier!r} (logreg or boosting)")
        return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=5000))

    def _weight_param(self) -> str:
        return f"{self._classifier().steps[-1][0]}__sample_weight"

    def fit(
        self,
        X: Any,
        y: Any,
        corpus_texts: Sequence[str] = (),
        corpus_groups: Sequence[str] = (),
        groups: Any = None,
        features: np.ndarray | None = None,
        sample_weight: Any = None,
    ) -> RelevanceModel:
        """Fit on pairs X (canonical columns) with labels y.

        `corpus_texts`/`corpus_groups`: normalised real comments and the article each was posted
        under, for the feature spaces (RelevanceFeatures.fit). `groups`: article per row, for the
        out-of-fold thresholds. `features`: X's feature matrix when the caller already has it
        (from this model's prefit extractor).
        """
        from sklearn.model_selection import GroupKFold, cross_val_predict

        prepared = CommentPreprocessor().transform(X)
        y = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        if self.features is not None and hasattr(self.features, "feature_names_"):
            self.features_ = self.features
        else:
            self.features_ = clone(self.features if self.features is not None else RelevanceFeatures())
            # Without a corpus the pairs' own comments, grouped by article title, stand in.
            pairs = None if len(corpus_texts) else prepared
            self.features_.fit(pairs, corpus_texts=corpus_texts, corpus_groups=corpus_groups)
        matrix = self.features_.transform(prepared) if features is None else np.asarray(features)
        names = list(self.features_.feature_names_)
        self.columns_ = np.asarray([names.index(c) for c in (self.columns or names)], dtype=np.int64)
        self.generic_columns_ = (names.index("generic_df"), names.index("specific_words"))
        self.script_column_ = names.index("script_mismatch") if "script_mismatch" in names else None
        kinds = self._kinds(prepared)
        groups = np.asarray(groups) if groups is not None else np.arange(len(y))
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        generic = self._generic(matrix)
        self.models_: dict[str, Any] = {}
        self.thresholds_: dict[str, float] = {}
        self.linear_: dict[str, tuple[np.ndarray, float]] = {}
        for kind in CONTEXT_KINDS:
            rows = (kinds == kind) & ~generic
            if rows.sum() < 10 or len(set(y[rows])) < 2:
                continue
            fk, yk, gk, wk = matrix[rows][:, self.columns_], y[rows], groups[rows], weight[rows]
            model = self._classifier().fit(fk, yk, **{self._weight_param(): wk})
            n_folds = min(self.threshold_folds, len(set(gk.tolist())))
            if n_folds >= 2:
                p = cross_val_predict(
                    self._classifier(),
                    fk,
                    yk,
                    groups=gk,
                    cv=GroupKFold(n_folds),
                    method="predict_proba",
                    params={self._weight_param(): wk},
                )[:, 1]
            else:
                p = model.predict_proba(fk)[:, 1]
            # Generic real comments are never held, so the whole budget of `target_held` of the
            # kind's real comments is spent on the topical ones.
            real_all = int(((kinds == kind) & (y == 0)).sum())
            real_topical = int((yk == 0).sum())
            if real_topical == 0:
                continue
            share = min(1.0, self.target_held * real_all / real_topical)
            self.thresholds_[kind] = float(np.quantile(p[yk == 0], 1.0 - share))
            self.models_[kind] = model
            scaler, classifier = model[0], model[-1]
            if hasattr(classifier, "coef_"):  # a logistic regression scores as one dot product
                coef = classifier.coef_.ravel() / scaler.scale_
                self.linear_[kind] = (coef, float(classifier.intercept_[0] - scaler.mean_ @ coef))
        return self

    # --- scoring ------------------------------------------------------------------------------

    @staticmethod
    def _kinds(prepared: PreparedComments) -> np.ndarray:
        return np.array([context_kind(t, b) for t, b in zip(prepared.title, prepared.body, strict=True)])

    def _is_generic(self, generic_df: float, specific: float) -> bool:
        """No topical word at all, or at most `generic_max_specific` specific word (a word used under
        fewer than the features' `rare_df` of the corpus articles, or never): nothing in the
        comment can be evidence that it is about another story."""
        return generic_df >= 1.0 or specific <= self.generic_max_specific

    def _generic(self, matrix: np.ndarray) -> np.ndarray:
        """`_is_generic` of every row."""
        values = matrix[:, list(self.generic_columns_)].tolist()
        return np.array([self._is_generic(df, specific) for df, specific in values], dtype=bool)

    def article_sides(self, prepared: PreparedComments) -> list[ArticleSide]:
        """Each row's article side: from the article's cache entry when the model runtime built the
        batch (computed there once per article, across calls), else once per distinct article of
        the batch."""
        features = self.features_
        if prepared.articles:
            return [
                entry.part(RELEVANCE_PART, partial(features.article_side, entry.title, entry.body))
                if entry is not None
                else (None, None, None)
                for entry in prepared.articles
            ]
        sides: dict[tuple[str, str], ArticleSide] = {}
        for key in zip(prepared.title, prepared.body, strict=True):
            if key not in sides:
                sides[key] = features.article_side(*key)
        return [sides[key] for key in zip(prepared.title, prepared.body, strict=True)]

    def feature_rows(self, X: Any) -> np.ndarray:
        """Relation features for a batch (rows in `features_.feature_names_` order)."""
        prepared = CommentPreprocessor().transform(X)
        return self.features_.rows(prepared.text, self.article_sides(prepared))

    def relations(self, X: Any, features: np.ndarray | None = None) -> Relations:
        """Relations of a batch (canonical DataFrame or PreparedComments)."""
        prepared = CommentPreprocessor().transform(X)
        matrix = self.feature_rows(prepared) if features is None else np.asarray(features)
        kinds = self._kinds(prepared)
        kind_list = kinds.tolist()
        p = np.zeros(len(kind_list))
        # Rows grouped by kind in Python: masks over the batch cost more than the arithmetic for the
        # one comment a request scores. Each kind's rows are one matrix product, as in a batch.
        by_kind: dict[str, list[int]] = {}
        for r, kind in enumerate(kind_list):
            by_kind.setdefault(kind, []).append(r)
        for kind, rows in by_kind.items():
            model = self.models_.get(kind)
            if model is None:
                continue
            if kind in self.linear_:
                coef, intercept = self.linear_[kind]
                z = matrix[rows][:, self.columns_] @ coef + intercept
                p[rows] = 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
            else:
                p[rows] = model.predict_proba(matrix[rows][:, self.columns_])[:, 1]
        generic_df_column, specific_column = self.generic_columns_
        script_column = self.__dict__.get("script_column_")
        rule_columns = [generic_df_column, specific_column]
        if script_column is not None:
            rule_columns.append(script_column)
        # The rule row by row in Python: a dozen numpy calls over the batch cost more than the rule
        # itself for the one comment a request scores.
        relation, off_topic, generic, other_script = [], [], [], []
        for kind, p_row, values in zip(kind_list, p.tolist(), matrix[:, rule_columns].tolist(), strict=True):
            # Another script: a Latin comment under an Arabic article.
            generic_row = self._is_generic(values[0], values[1])
            other_row = script_column is not None and values[2] > 0 and kind != NONE
            generic.append(generic_row)
            other_script.append(other_row)
            # A context kind without a fitted classifier (no training rows of that kind) holds nothing.
            threshold = self.thresholds_.get(kind, math.inf)
            has_model = math.isfinite(threshold)
            if kind == NONE:
                relation.append(NO_ARTICLE)
            elif other_row:
                relation.append(OTHER_SCRIPT)
            elif generic_row:
                relation.append(GENERIC)
            else:
                relation.append(ABOUT_ELSE if has_model and p_row >= threshold else ABOUT_THIS)
            if other_row:
                off_topic.append(math.nan)
            else:
                off_topic.append(_rescale(p_row, threshold) if has_model and not generic_row else 0.0)
        return Relations(
            kinds,
            p,
            np.array(generic, dtype=bool),
            np.array(relation, dtype=object),
            np.array(off_topic, dtype=np.float64),
        )

    def off_topic_scores(self, X: Any) -> np.ndarray:
        """The product's off_topic score per row: REVIEW_AT at the context's threshold, 0 for
        generic reactions and comments without an article, NaN where the component has no say."""
        return self.relations(X).off_topic

    def predict_proba(self, X: Any) -> np.ndarray:
        """(rows × 2): p(about this or generic), p(about something else) on the product's scale
        (0 where the component has no say)."""
        score = np.nan_to_num(self.off_topic_scores(X), nan=0.0)
        return np.column_stack([1.0 - score, score])

    def predict(self, X: Any) -> np.ndarray:
        """1 where the relation is `about_something_else`."""
        return (self.relations(X).relation == ABOUT_ELSE).astype(int)


def _rescale(p: float, threshold: float) -> float:
    """Piecewise-linear map of p with the threshold at REVIEW_AT: [0, t] → [0, ½], [t, 1] → [½, 1]."""
    t = min(max(threshold if math.isfinite(threshold) else 1.0, 1e-6), 1.0 - 1e-6)
    scaled = REVIEW_AT * p / t if p < t else REVIEW_AT + (1.0 - REVIEW_AT) * (p - t) / (1.0 - t)
    return min(max(scaled, 0.0), 1.0)
