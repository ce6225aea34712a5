"""Assemble the one scikit-learn Pipeline that is the model: preprocess → features → classifier."""

from __future__ import annotations

from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from serving.features.ngrams import HashedNgrams, TextNgrams
from serving.features.prepare import CommentPreprocessor, SequentialFeatureUnion
from serving.features.relation import ArticleRelation
from serving.features.signals import SpamSignals
from serving.model.moderation import CLASSIFIER_STEP, FEATURES_STEP, PREPROCESS_STEP
from training.experiment.config import FeatureConfig

CANDIDATE_KINDS = ("logreg", "linear_svc", "complement_nb", "sgd")


def _ngrams(config: FeatureConfig, analyzer: str) -> HashedNgrams | TextNgrams:
    char = analyzer == "char_wb"
    ngram_range = config.char_ngrams if char else config.word_ngrams
    max_features = config.max_char_features if char else config.max_word_features
    if config.ngram_encoding == "hashed":
        return HashedNgrams(
            analyzer=analyzer,
            ngram_range=ngram_range,
            n_bits=config.char_hash_bits if char else config.word_hash_bits,
            min_df=config.min_df,
            max_features=max_features,
        )
    return TextNgrams(
        analyzer=analyzer, ngram_range=ngram_range, min_df=config.min_df, max_features=max_features
    )


def build_features(config: FeatureConfig) -> SequentialFeatureUnion:
    """The feature union: char and word n-grams, the article relation (unless switched off), spam signals."""
    blocks: list[tuple[str, Any]] = [("char", _ngrams(config, "char_wb")), ("word", _ngrams(config, "word"))]
    weights = {"char": 1.0, "word": 1.0}
    if config.article_relation:
        blocks.append(("context", ArticleRelation(n_components=config.lsa_components, min_df=config.min_df)))
        weights["context"] = config.context_weight
    blocks.append(("signals", SpamSignals()))
    weights["signals"] = config.signals_weight
    return SequentialFeatureUnion(blocks, transformer_weights=weights)


def build_classifier(kind: str, params: dict[str, Any], seed: int = 13) -> Any:
    """A candidate classifier with calibrated probabilities."""
    if kind == "logreg":
        return LogisticRegression(
            C=params.get("C", 10.0),
            class_weight=params.get("class_weight", "balanced"),
            max_iter=params.get("max_iter", 2000),
            tol=params.get("tol", 1e-4),
            solver="lbfgs",
        )
    if kind == "linear_svc":
        return CalibratedClassifierCV(
            LinearSVC(C=params.get("C", 0.5), class_weight=params.get("class_weight", "balanced")),
            method="sigmoid",
            cv=params.get("cv", 3),
        )
    if kind == "complement_nb":
        return ComplementNB(alpha=params.get("alpha", 0.3))
    if kind == "sgd":
        if params.get("loss") == "log_loss":  # probabilistic already: no calibration folds needed
            return SGDClassifier(
                loss="log_loss",
                alpha=params.get("alpha", 1e-5),
                class_weight=params.get("class_weight", "balanced"),
                max_iter=params.get("max_iter", 50),
                tol=1e-3,
                random_state=seed,
            )
        return CalibratedClassifierCV(
            SGDClassifier(
                loss="modified_huber",
                alpha=params.get("alpha", 1e-5),
                class_weight=params.get("class_weight", "balanced"),
                max_iter=params.get("max_iter", 200),
                tol=1e-4,
                random_state=seed,
            ),
            method="sigmoid",
            cv=params.get("cv", 3),
        )
    raise ValueError(f"unknown classifier kind {kind!r} (choose from {', '.join(CANDIDATE_KINDS)})")


def build_pipeline(features: FeatureConfig, kind: str, params: dict[str, Any], seed: int = 13) -> Pipeline:
    """The full model Pipeline over a DataFrame of canonical columns."""
    return Pipeline(
        [
            (PREPROCESS_STEP, CommentPreprocessor()),
            (FEATURES_STEP, build_features(features)),
            (CLASSIFIER_STEP, build_classifier(kind, params, seed)),
        ]
    )
