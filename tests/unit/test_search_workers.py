"""The candidate search's worker processes end with the search: the rest of training does not use
them, and each holds its own copy of the search's matrices (counted in training's peak memory)."""

from __future__ import annotations

import numpy as np
import psutil
import pytest
import scipy.sparse as sp

from serving.model.moderation import CLASSIFIER_STEP, FEATURES_STEP, PREPROCESS_STEP
from training.experiment.config import CandidateConfig, ExperimentConfig
from training.experiment.train import Features, candidate_grid, cross_validate, fit_pipeline

pytestmark = pytest.mark.unit


def _search_workers() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            # loky's resource tracker (a small helper that outlives the pool by design) is not a worker.
            if "loky" in command and "resource_tracker" not in command:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _features(n: int = 90) -> Features:
    """Noise columns plus one column per class: every fit can learn the labels."""
    y = np.array(["on_topic", "spam", "abusive"] * (n // 3))
    noise = sp.random(n, 40, density=0.2, format="csr", random_state=1)
    signal = sp.csr_matrix(np.eye(3)[np.arange(n) % 3] * 2.0)
    x = sp.hstack([noise, signal]).tocsr()
    fold = (np.arange(n) // 3) % 3  # every class in every fold
    folds = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(3)]
    return Features(None, x, y, np.ones(n), x, y, folds, fold)  # type: ignore[arg-type]


def test_a_parallel_search_leaves_no_worker_processes_behind() -> None:
    config = ExperimentConfig(
        n_jobs=2,
        candidates=(CandidateConfig(kind="logreg", grid={"C": [1.0]}), CandidateConfig(kind="sgd", grid={})),
    )
    settings = candidate_grid(config.candidates)
    features = _features()
    in_parallel, _, _ = cross_validate(config, settings, features, ["abusive", "on_topic", "spam"], None)
    assert not _search_workers()
    alone, _, _ = cross_validate(
        config.model_copy(update={"n_jobs": 1}), settings, features, ["abusive", "on_topic", "spam"], None
    )

    def scores(candidates):
        return [{k: v for k, v in c.items() if k != "seconds"} for c in candidates]

    assert scores(in_parallel) == scores(alone)
    assert scores(alone)[0]["cv_macro_f1"] > 0.9  # the fits really ran on the signal columns


def test_a_parallel_search_fits_every_setting_on_every_row_as_fitting_the_winner_afterwards_would() -> None:
    config = ExperimentConfig(
        n_jobs=2,
        candidates=(
            CandidateConfig(kind="logreg", grid={"C": [1.0, 5.0]}),
            CandidateConfig(kind="sgd", grid={}),
        ),
    )
    settings = candidate_grid(config.candidates)
    features = _features()
    features.featurizer = _Featurizer()  # type: ignore[assignment]
    _, _, finals = cross_validate(config, settings, features, ["abusive", "on_topic", "spam"], None)
    assert sorted(finals) == list(range(len(settings)))
    for s, (kind, params) in enumerate(settings):
        after = fit_pipeline(features, kind, params, config.seed).named_steps[CLASSIFIER_STEP]
        ahead = fit_pipeline(features, kind, params, config.seed, finals[s]).named_steps[CLASSIFIER_STEP]
        assert ahead is finals[s]
        # Fitted on every row: a fold's rows would give other coefficients.
        np.testing.assert_allclose(
            ahead.predict_proba(features.x_fit), after.predict_proba(features.x_fit), rtol=1e-6, atol=1e-9
        )
    _, _, none_ahead = cross_validate(
        config.model_copy(update={"n_jobs": 1}), settings, features, ["abusive", "on_topic", "spam"], None
    )
    assert none_ahead == {}


class _Featurizer:
    """The two fitted steps `fit_pipeline` puts in front of the classifier (pass-through here)."""

    def __init__(self) -> None:
        self.named_steps = {PREPROCESS_STEP: "passthrough", FEATURES_STEP: "passthrough"}
