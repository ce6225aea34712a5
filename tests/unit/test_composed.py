"""A base model plus label heads: the combination rule, the sklearn face, and serving's fast path."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline

from serving.features.agreement import CrossSourceScaling
from serving.features.ngrams import HashedNgrams
from serving.features.prepare import CommentPreprocessor, SequentialFeatureUnion
from serving.model.composed import ComposedClassifier, apply_heads
from serving.model.moderation import CommentInput, ModerationModel

LABELS = ("on_topic", "off_topic", "spam", "abusive")


def test_the_head_sets_its_label_and_the_other_labels_keep_their_proportions() -> None:
    base = np.array([[0.5, 0.1, 0.1, 0.3], [0.2, 0.2, 0.5, 0.1]])
    combined = apply_heads(base, LABELS, {"abusive": np.array([0.02, 0.9])})
    np.testing.assert_allclose(combined.sum(axis=1), 1.0)
    np.testing.assert_allclose(combined[:, 3], [0.02, 0.9])
    # on_topic : off_topic : spam stay 5 : 1 : 1 and 2 : 2 : 5
    np.testing.assert_allclose(combined[0, :3] / combined[0, 0], [1.0, 0.2, 0.2])
    np.testing.assert_allclose(combined[1, :3] / combined[1, 2], [0.4, 0.4, 1.0])


def test_a_base_certain_of_the_label_gives_the_freed_mass_to_the_acceptable_label() -> None:
    base = np.array([[0.0, 0.0, 0.0, 1.0]])
    combined = apply_heads(base, LABELS, {"abusive": np.array([0.1])})
    np.testing.assert_allclose(combined, [[0.9, 0.0, 0.0, 0.1]])


def test_the_base_probabilities_are_not_modified_in_place() -> None:
    base = np.array([[0.4, 0.2, 0.2, 0.2]])
    apply_heads(base, LABELS, {"abusive": np.array([0.8])})
    np.testing.assert_allclose(base, [[0.4, 0.2, 0.2, 0.2]])


def _frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "article_title": None, "article_text": None})


INSULTS = ["يا كلب يا حقير", "انت حقير وكلب", "كلب ابن كلب", "يا حقير انقلع"]
CLEAN = ["شكرا على الخبر المفيد", "مقال جميل ومفيد", "الله يوفقكم", "خبر مهم شكرا"]
SPAM = ["ربح سريع اتصل واتساب", "اتصل الآن ربح مضمون", "واتساب للربح السريع", "ربح مضمون اتصل"]


def _union() -> SequentialFeatureUnion:
    return SequentialFeatureUnion(
        [
            ("char", HashedNgrams(analyzer="char_wb", ngram_range=(2, 4), n_bits=14, min_df=1)),
            ("word", HashedNgrams(analyzer="word", ngram_range=(1, 1), n_bits=12, min_df=1)),
        ]
    )


@pytest.fixture(scope="module")
def composed() -> ComposedClassifier:
    base = Pipeline(
        [("prep", CommentPreprocessor()), ("features", _union()), ("clf", LogisticRegression(C=10.0))]
    )
    head = Pipeline(
        [
            ("prep", CommentPreprocessor()),
            ("features", CrossSourceScaling(_union())),
            ("clf", SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)),
        ]
    )
    texts = INSULTS + CLEAN + SPAM
    labels = ["abusive"] * 4 + ["on_topic"] * 4 + ["spam"] * 4
    return ComposedClassifier(base=base, heads={"abusive": head}).fit(_frame(texts), labels)


def test_the_composed_classifier_is_one_classifier_over_the_base_labels(composed) -> None:
    frame = _frame(["يا كلب حقير", "شكرا على المقال"])
    proba = composed.predict_proba(frame)
    assert list(composed.classes_) == ["abusive", "on_topic", "spam"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 0], composed.heads["abusive"].predict_proba(frame)[:, 1])
    assert list(composed.predict(frame)) == ["abusive", "on_topic"]


def test_serving_scores_a_composed_model_like_its_own_predict_proba_and_explains_with_the_head(
    composed,
) -> None:
    model = ModerationModel(composed, {"thresholds": {"reject_at": {}, "review_at": {"abusive": 0.5}}})
    items = [CommentInput("يا كلب حقير"), CommentInput("شكرا على المقال", "خبر", "نص الخبر")]
    expected = composed.predict_proba(
        pd.DataFrame([item.as_row() for item in items], columns=["text", "article_title", "article_text"])
    )
    np.testing.assert_allclose(model.predict_proba(items), expected, atol=1e-5)
    result = model.score(items[:1])[0]
    assert result.decided_label == "abusive"
    grams = " ".join(r.detail for r in result.reasons if r.kind == "ngram")
    assert "كلب" in grams or "حقير" in grams, result.reasons
    assert result.spans, "the insult is marked in the comment"
