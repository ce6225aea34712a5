"""A training run says where its time went, stage by stage (`raqib train` prints it, `make bench`
tabulates it), so the next person speeding training up starts from the run's own figures."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.model


def test_a_training_run_reports_each_stage_s_seconds_in_order(starter_result) -> None:
    stages = starter_result.metrics["stage_seconds"]
    assert list(stages)[:4] == [
        "gathering_data",
        "featurising",
        "candidate_search",
        "thresholds_and_final_fit",
    ]
    assert list(stages)[-2:] == ["frozen_evaluation", "leakage_checks"]
    assert all(seconds >= 0 for seconds in stages.values())
    # Up to the evaluation, the stages are the run's training time: none is missed or counted twice.
    training = sum(
        seconds for stage, seconds in stages.items() if stage not in ("frozen_evaluation", "leakage_checks")
    )
    assert training == pytest.approx(starter_result.train_seconds, abs=0.1)
