"""The retrain bench's comparison: identical models compare as identical, a different one does not."""

import pytest
from sklearn.base import clone

from training.bench.retrain import compare

pytestmark = pytest.mark.model


def test_a_model_compared_with_itself_is_identical_and_changes_nothing(starter_result) -> None:
    pipeline, frozen = starter_result.pipeline, starter_result.frozen_records
    fresh = [{"pipeline": pipeline, "thresholds": starter_result.thresholds}] * 2
    figures = compare(pipeline, fresh, frozen, starter_result.labels)
    assert figures["rows"] == len(frozen) > 0
    assert figures["runs_identical"] and figures["runs_thresholds_equal"]
    assert figures["champion_max_difference"] == 0.0 and figures["champion_decisions_differ"] == 0
    assert set(figures["deltas"].values()) == {0.0}


def test_a_differently_fitted_model_shows_its_differences(starter_result) -> None:
    from training.data.gather import to_frame
    from training.experiment.train import gold_labels

    pipeline, frozen = starter_result.pipeline, starter_result.frozen_records
    # The same Pipeline refitted on the frozen rows with a weaker classifier: another model.
    other = clone(pipeline).set_params(clf__C=0.01).fit(to_frame(frozen), gold_labels(frozen))
    fresh = [
        {"pipeline": other, "thresholds": starter_result.thresholds},
        {"pipeline": pipeline, "thresholds": starter_result.thresholds},
    ]
    figures = compare(pipeline, fresh, frozen, starter_result.labels)
    assert not figures["runs_identical"] and figures["runs_max_difference"] > 0
    assert figures["champion_max_difference"] > 0 and figures["champion_decisions_differ"] > 0
    assert figures["deltas"]["frozen macro-F1"] != 0.0
