"""Decisions from thresholds, and how thresholds are chosen from out-of-fold scores."""

import numpy as np
import pytest

from serving.model.decisions import APPROVE, REJECT, REVIEW, Thresholds, decide
from training.experiment.evaluate import choose_thresholds, classification_metrics, expected_calibration_error

pytestmark = pytest.mark.unit

POLICY = Thresholds(reject_at={"spam": 0.9, "off_topic": 0.95}, review_at={"spam": 0.5, "off_topic": 0.6})


@pytest.mark.parametrize(
    ("scores", "action", "label"),
    [
        ({"on_topic": 0.05, "spam": 0.93, "off_topic": 0.02}, REJECT, "spam"),
        ({"on_topic": 0.3, "spam": 0.6, "off_topic": 0.1}, REVIEW, "spam"),
        ({"on_topic": 0.35, "spam": 0.05, "off_topic": 0.6}, REVIEW, "off_topic"),
        ({"on_topic": 0.9, "spam": 0.05, "off_topic": 0.05}, APPROVE, None),
        # most likely spam, though under every threshold: a moderator sees it
        ({"on_topic": 0.3, "spam": 0.45, "off_topic": 0.25}, REVIEW, "spam"),
        # on_topic never triggers anything, however confident
        ({"on_topic": 1.0, "spam": 0.0, "off_topic": 0.0}, APPROVE, None),
    ],
)
def test_decide(scores, action, label) -> None:
    assert decide(scores, POLICY) == (action, label)


def test_never_reject_holds_for_a_saturated_probability() -> None:
    never = Thresholds(reject_at={"off_topic": 1.0}, review_at={"off_topic": 0.15})
    assert decide({"on_topic": 0.0, "off_topic": 1.0}, never) == (REVIEW, "off_topic")


def test_site_overrides_replace_only_named_labels() -> None:
    strict = POLICY.with_overrides(reject_at={"spam": 0.5})
    assert strict.reject_at == {"spam": 0.5, "off_topic": 0.95}
    assert decide({"on_topic": 0.3, "spam": 0.6, "off_topic": 0.1}, strict) == (REJECT, "spam")


def test_thresholds_reach_target_precision_on_separable_scores() -> None:
    rng = np.random.default_rng(0)
    y = np.array(["spam"] * 100 + ["on_topic"] * 100)
    spam_scores = np.concatenate([rng.uniform(0.7, 1.0, 100), rng.uniform(0.0, 0.6, 100)])
    proba = np.column_stack([1 - spam_scores, spam_scores])
    chosen = choose_thresholds(
        y, proba, ["on_topic", "spam"], target_precision=0.99, target_recall=0.9, min_support=10
    )
    reject = chosen["reject_at"]["spam"]
    predicted = spam_scores >= reject
    assert (y[predicted] == "spam").mean() >= 0.99
    assert 0.55 <= reject <= 0.75
    assert chosen["review_at"]["spam"] <= reject


def test_one_mislabelled_record_at_the_top_does_not_forbid_auto_reject() -> None:
    y = np.array(["on_topic"] + ["spam"] * 300 + ["on_topic"] * 300)
    spam_scores = np.concatenate([[0.999], np.linspace(0.99, 0.7, 300), np.linspace(0.6, 0.0, 300)])
    proba = np.column_stack([1 - spam_scores, spam_scores])
    chosen = choose_thresholds(
        y, proba, ["on_topic", "spam"], target_precision=0.99, target_recall=0.9, min_support=10
    )
    reject = chosen["reject_at"]["spam"]
    assert reject < 1.0
    assert (y[spam_scores >= reject] == "spam").mean() >= 0.99


def test_precision_dropping_below_target_further_down_stops_the_cut() -> None:
    # 100 clean spam on top, then a band where a third are false positives: the cut stays above it.
    y = np.array(["spam"] * 100 + ["spam", "spam", "on_topic"] * 30 + ["on_topic"] * 100)
    spam_scores = np.concatenate([np.linspace(1.0, 0.9, 100), np.linspace(0.89, 0.6, 90), np.full(100, 0.1)])
    proba = np.column_stack([1 - spam_scores, spam_scores])
    chosen = choose_thresholds(
        y, proba, ["on_topic", "spam"], target_precision=0.99, target_recall=0.9, min_support=10
    )
    reject = chosen["reject_at"]["spam"]
    assert 0.85 < reject < 0.9
    assert (y[spam_scores >= reject] == "spam").mean() >= 0.99


def test_unreachable_precision_means_never_auto_reject() -> None:
    y = np.array(["spam", "on_topic"] * 50)
    proba = np.full((100, 2), 0.5)
    chosen = choose_thresholds(
        y, proba, ["on_topic", "spam"], target_precision=0.99, target_recall=0.9, min_support=10
    )
    assert chosen["reject_at"]["spam"] == 1.0


def test_metrics_and_calibration() -> None:
    y = ["a", "a", "b", "b"]
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    metrics = classification_metrics(y, proba, ["a", "b"])
    assert metrics["accuracy"] == 0.75
    assert metrics["confusion_matrix"] == [[2, 0], [1, 1]]
    assert metrics["per_class"]["b"]["recall"] == 0.5
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(np.array([0, 1]), perfect) == 0.0


def test_a_final_label_is_held_only_at_its_own_threshold() -> None:
    # abusive's review_at was chosen on sources the model never saw: the "most likely label"
    # fallback must not hold a comment below it, but still names the other labels.
    policy = Thresholds(
        reject_at={"abusive": 0.9}, review_at={"abusive": 0.65, "spam": 0.5}, final=frozenset({"abusive"})
    )
    assert decide({"on_topic": 0.4, "abusive": 0.55, "spam": 0.05}, policy) == (APPROVE, None)
    assert decide({"on_topic": 0.3, "abusive": 0.66, "spam": 0.04}, policy) == (REVIEW, "abusive")
    assert decide({"on_topic": 0.2, "abusive": 0.35, "spam": 0.45}, policy) == (REVIEW, "spam")
    assert policy.with_overrides(review_at={"abusive": 0.7}).final == frozenset({"abusive"})
