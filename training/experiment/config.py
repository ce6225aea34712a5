"""Experiment configuration: frozen pydantic models read from TOML files in experiments/."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from serving.schema import DEFAULT_LABELS, DEFAULT_MODEL_NAME
from training.data.config import AugmentConfig, DataConfig, FrozenConfig


class FeatureConfig(FrozenConfig):
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
    # The base model's article-relation block (serving/features/relation.py: TF-IDF and LSA similarity to
    # the article, shared words, script mismatch). Off-topic is the relevance component's to decide;
    # on the public build the base model did as well without this block (experiments/public.toml).
    article_relation: bool = True
    context_weight: float = 1.0
    signals_weight: float = 1.0


class CandidateConfig(FrozenConfig):
    """One classifier family and the grid searched for it."""

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)


class ThresholdConfig(FrozenConfig):
    """How reject/review thresholds are chosen from out-of-fold predictions."""

    target_precision: float = 0.99
    target_recall: float = 0.90
    min_support: int = 10


class AbuseHeadConfig(FrozenConfig):
    """The `abusive` head: a binary model trained for abuse alone, on corpora chosen for it.

    Every source with both classes is evaluated left out (a model that never saw the source
    scores it) and the head's thresholds come from those predictions: what a site the model has
    never seen will get. Sources are grouped into families (`families`: e.g. AOC's joined comments
    and its published sentences are one site's text) so that no relative of a held-out source is
    trained on.
    """

    enabled: bool = True
    # Abuse corpora labelled abusive vs not, each evaluated left out.
    evaluated_sources: tuple[str, ...] = ()
    # Of those, the ones labelled by an insult/offence definition: the thresholds must hold on
    # them. Hate-only corpora (their negatives hold plain insults) are reported, not used for them.
    threshold_sources: tuple[str, ...] = ()
    # Real published comments (all non-abusive), evaluated left out as "held with no article".
    published_sources: tuple[str, ...] = ()
    # The published corpora whose held share the review threshold must respect.
    published_goal_sources: tuple[str, ...] = ()
    families: dict[str, str] = Field(default_factory=dict)
    exclude_sources: tuple[str, ...] = ()
    # Training rows kept per (source, class), sampled with the seed.
    max_per_cell: int | None = 6000
    max_rows: dict[str, int] = Field(default_factory=dict)
    # Each (source, class) cell weighs as much as any other unless given a mass here.
    source_mass: dict[str, float] = Field(default_factory=dict)
    # Negative-sentiment halves of sentiment corpora (published, nobody checked them for insults).
    noisy_weight: float = 0.5
    # Drop training negatives with an insult-lexicon hit (training.data.insults), except these.
    drop_insult_negatives: bool = True
    trusted_sources: tuple[str, ...] = ("starter", "feedback")
    char_ngrams: tuple[int, int] = (2, 5)
    word_ngrams: tuple[int, int] = (1, 2)
    char_max_features: int = 200_000
    word_max_features: int = 100_000
    word_weight: float = 0.5
    min_df: int = 2
    scaling_floor: float = 0.1
    alpha: float = 1e-5
    source_folds: int = 4
    # Rows scored per evaluated source in `raqib train` (the bench scores every row).
    max_scored_per_source: int | None = 5000
    # Threshold rules on the left-out predictions.
    max_held: float = 0.05
    max_published_held: float = 0.02
    reject_max_held: float = 0.01


class RelevanceConfig(FrozenConfig):
    """The relevance component that decides `off_topic` (serving/model/relevance.py).

    Its feature spaces learn from real comments grouped by article (`corpus_source`, no label); its
    classifiers from comments under their own article against the same comments re-paired with
    other articles (`pair_sources`: CONSTRUCTED negatives) and from human relevance labels
    (`labelled_sources`). Every figure `raqib train` reports is out of fold, folds grouped by
    article, beside the plain char-TF-IDF cosine in the same folds.
    """

    enabled: bool = False
    corpus_source: str = "aoc_sentences"
    pair_sources: tuple[str, ...] = ("aoc",)
    labelled_sources: tuple[str, ...] = ("semeval2015",)
    # Feature families (serving/features/relevance.py FAMILIES); () = the product's default.
    families: tuple[str, ...] = ()
    n_components: int = 200
    topic_vocabulary: int = 20_000
    max_background: int = 2000
    # Share of real (comment, own article) pairs the threshold may hold, per context kind.
    target_held: float = 0.04
    C: float = 1.0
    # "logreg" (one dot product per comment) or "boosting" (gradient-boosted trees): compared in the bench.
    classifier: str = "logreg"
    # A comment with at most this many specific (rare) words is a generic reaction: never off_topic.
    generic_max_specific: int = 0
    # Total training weight per source (default 1 each: AOC's pairs and SemEval's labels weigh alike).
    source_mass: dict[str, float] = Field(default_factory=dict)
    folds: int = 5


class GateConfig(FrozenConfig):
    """Promotion gate: how much worse than the champion a challenger may be."""

    metric: str = "macro_f1"
    tolerance: float = 0.01


class ExperimentConfig(FrozenConfig):
    """A whole experiment: data, features, candidates, thresholds, registry."""

    name: str = "raqib-starter"
    seed: int = 13
    labels: tuple[str, ...] = DEFAULT_LABELS
    cv_folds: int = 3
    # Candidate × fold fits run in parallel processes (-1: one per core).
    n_jobs: int = -1
    registered_model: str = DEFAULT_MODEL_NAME
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
    abuse: AbuseHeadConfig = Field(default_factory=AbuseHeadConfig)
    relevance: RelevanceConfig = Field(default_factory=RelevanceConfig)
    gate: GateConfig = Field(default_factory=GateConfig)


__all__ = [
    "AbuseHeadConfig",
    "AugmentConfig",
    "CandidateConfig",
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "FeatureConfig",
    "GateConfig",
    "RelevanceConfig",
    "ThresholdConfig",
    "load_config",
]


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
