"""The base model's feature union as the experiment config builds it."""

import pytest

from serving.model.moderation import CommentInput, ModerationModel
from tests.conftest import POLITICS_BODY, POLITICS_TITLE, SPAM, tiny_training_frame
from training.experiment.config import FeatureConfig
from training.experiment.pipeline import build_features, build_pipeline

pytestmark = pytest.mark.unit


def test_the_article_relation_block_is_there_unless_switched_off() -> None:
    with_relation = build_features(FeatureConfig())
    without = build_features(FeatureConfig(article_relation=False))
    assert [name for name, _ in with_relation.transformer_list] == ["char", "word", "context", "signals"]
    assert [name for name, _ in without.transformer_list] == ["char", "word", "signals"]
    assert "context" not in (without.transformer_weights or {})


def test_a_model_without_the_article_relation_scores_and_explains_with_an_article() -> None:
    frame = tiny_training_frame()
    pipeline = build_pipeline(FeatureConfig(min_df=1, article_relation=False), "logreg", {"C": 10.0})
    pipeline.fit(frame, frame["label"])
    model = ModerationModel(pipeline, {"thresholds": {"review_at": {"spam": 0.3}, "reject_at": {}}})
    scored = model.score([CommentInput(SPAM[0], POLITICS_TITLE, POLITICS_BODY), CommentInput(SPAM[0])])
    # The base model reads no article: the same comment scores the same with or without one.
    assert scored[0].scores == scored[1].scores
    assert scored[0].label == "spam" and any(reason.kind == "ngram" for reason in scored[0].reasons)
