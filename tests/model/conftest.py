"""A model trained on the authored starter corpus, once per test session (a few seconds)."""

import json
import os
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


DATASETS = Path(os.environ.get("RAQIB_DATASETS") or REPO.parent / "shared" / "datasets")
# Abuse sources that load in seconds and cover Levantine, Egyptian, Gulf, Iraqi, Maghrebi and MSA.
HEAD_SOURCES = (
    "osact2020",
    "omcd",
    "alakrot_youtube",
    "letmi",
    "egyptian_tweets",
    "mpold",
    "myc",
    "mac",
    "msac",
)


def require_corpora(*names: str) -> None:
    """Skip (with the reason) unless the public corpora `names` are beside the repository."""
    from training.data.datasets.registry import SOURCES

    if not DATASETS.is_dir():
        pytest.skip(f"public corpora not found at {DATASETS} (set RAQIB_DATASETS)")
    missing = [name for name in names if SOURCES[name].missing_files(DATASETS)]
    if missing:
        pytest.skip(f"corpora missing under {DATASETS}: {', '.join(missing)}")


@pytest.fixture(scope="session")
def public_abuse_head():
    """(head Pipeline, {review_at, reject_at}): the abusive head trained as the public config trains it
    (same rows, cleaning, weights and features; smaller per-source caps so it takes seconds), its
    thresholds from the scores of sources it never saw (two groups of sources, to keep it quick)."""
    require_corpora(*HEAD_SOURCES)
    from training.data.datasets.registry import SOURCES
    from training.data.gather import load_starter
    from training.experiment.config import load_config
    from training.experiment.heads import (
        featurise_head,
        fit_head,
        head_rows,
        left_out_predictions,
        left_out_thresholds,
        scored_rows,
    )

    records = [r for name in HEAD_SOURCES for r in SOURCES[name].load(DATASETS, seed=13)]
    config = load_config(REPO / "experiments" / "public.toml").abuse.model_copy(
        update={"max_per_cell": 2500, "max_rows": {"myc": 4000, "mac": 4000}}
    )
    records += load_starter(REPO / "data" / "starter")
    rows = head_rows(config, records, seed=13)
    featurised = featurise_head(config, rows)
    scored = scored_rows(config, records, seed=13, per_source=2000)
    left_out = left_out_predictions(config, rows, featurised, scored, seed=13, n_folds=2)
    assert left_out is not None
    chosen = left_out_thresholds(config, left_out)
    assert chosen is not None
    return fit_head(config, rows, featurised, seed=13), chosen
