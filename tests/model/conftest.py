"""A model trained on the authored starter corpus, once per test session (a few seconds)."""

import json
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def starter_result():
    """The starter experiment with one candidate: a real TrainResult (no MLflow involved)."""
    from training.experiment.config import CandidateConfig, load_config
    from training.experiment.train import run_experiment

    config = load_config(REPO / "experiments" / "starter.toml")
    config = config.model_copy(
        update={
            "candidates": (CandidateConfig(kind="logreg", params={"C": 10.0}),),
            "data": config.data.model_copy(update={"labeled_dir": None}),
        }
    )
    return run_experiment(config, REPO)


@pytest.fixture(scope="session")
def starter_model(starter_result):
    """The starter result as the ModerationModel that serving would load."""
    from serving.model.moderation import ModerationModel
    from training.registry.tracking import bundle_metadata

    metadata = bundle_metadata(starter_result) | {"version": "test", "sha256": "-"}
    return ModerationModel(starter_result.pipeline, metadata)


@pytest.fixture(scope="session")
def seed_case() -> dict:
    """The project's own rendering of the seed article with the seed comment."""
    line = (REPO / "data" / "seed" / "seed.jsonl").read_text(encoding="utf-8").splitlines()[0]
    return json.loads(line)


@pytest.fixture(scope="session")
def starter_articles() -> dict[str, dict]:
    path = Path(REPO / "data" / "starter" / "articles.jsonl")
    return {a["article_id"]: a for a in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
