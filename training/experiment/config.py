"""Experiment configuration: frozen pydantic models read from TOML files in experiments/."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.schema import DEFAULT_LABELS


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureConfig(_Frozen):
    """Feature blocks of the Pipeline."""

    char_ngrams: tuple[int, int] = (2, 5)
    word_ngrams: tuple[int, int] = (1, 2)
    min_df: int = 2
    max_char_features: int | None = 300_000
    max_word_features: int | None = 200_000
    # "hashed": n-grams hashed into 2**bits buckets (no vocabulary in the model: small, fast to
    # load and to score). "vocabulary": sklearn's TfidfVectorizer vocabulary, as earlier models.
    ngram_encoding: Literal["hashed", "vocabulary"] = "hashed"
    char_hash_bits: int = Field(default=19, ge=10, le=24)
    word_hash_bits: int = Field(default=18, ge=10, le=24)
    lsa_components: int = 120
    context_weight: float = 1.0
    signals_weight: float = 1.0


class DataConfig(_Frozen):
    """Where training records come from and how sources are balanced."""

    starter: str | None = "data/starter"
    public: str | None = None
    labeled_dir: str | None = "data/labeled"
    require_public: bool = False
    exclude_sources: tuple[str, ...] = ("ar_tweet_accounts", "omp")
    # Cap on rows per (source, label): keeps one big corpus from becoming the definition of a class.
    max_per_source_label: dict[str, int] = Field(default_factory=dict)
    default_max_per_source_label: int | None = None
    source_weights: dict[str, float] = Field(default_factory=dict)


class AugmentConfig(_Frozen):
    """Context augmentation so the model sees every label with full, partial and no article."""

    title_only_rate: float = 0.5
    no_article_rate: float = 0.35
    attach_article_rate: float = 0.35


class CandidateConfig(_Frozen):
    """One classifier family and the grid searched for it."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


class ThresholdConfig(_Frozen):
    """How reject/review thresholds are chosen from out-of-fold predictions."""

    target_precision: float = 0.99
    target_recall: float = 0.90
    min_support: int = 10


class GateConfig(_Frozen):
    """Promotion gate: how much worse than the champion a challenger may be."""

    metric: str = "macro_f1"
    tolerance: float = 0.01


class ExperimentConfig(_Frozen):
    """A whole experiment: data, features, candidates, thresholds, registry."""

    name: str = "raqib-starter"
    seed: int = 13
    labels: tuple[str, ...] = DEFAULT_LABELS
    cv_folds: int = 3
    # Candidate × fold fits run in parallel processes (-1: one per core).
    n_jobs: int = -1
    registered_model: str = "raqib-moderator"
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    candidates: tuple[CandidateConfig, ...] = (
        CandidateConfig(kind="logreg", grid={"C": [3.0, 10.0, 30.0]}),
        CandidateConfig(kind="linear_svc", grid={"C": [0.1, 0.5]}),
        CandidateConfig(kind="complement_nb", grid={"alpha": [0.1, 0.3]}),
        CandidateConfig(kind="sgd", grid={"alpha": [1e-5, 1e-4]}),
    )
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    gate: GateConfig = Field(default_factory=GateConfig)


class ConfigError(ValueError):
    """An experiment file that cannot be read or does not validate."""


def load_config(path: str | Path | None) -> ExperimentConfig:
    """Read an experiment TOML file (None gives the built-in defaults)."""
    if path is None:
        return ExperimentConfig()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: experiment config not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: field '{field}': {first['msg']}") from None
