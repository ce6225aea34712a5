"""The data sections of an experiment config: where records come from, and context augmentation.

They live with the data code that reads them; `training.experiment.config` composes them into a
whole experiment.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FrozenConfig(BaseModel):
    """A config section: immutable, and an unknown key is an error rather than silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(FrozenConfig):
    """Where training records come from and how sources are balanced."""

    starter: str | None = "data/starter"
    public: str | None = None
    labeled_dir: str | None = "data/labeled"
    require_public: bool = False
    exclude_sources: tuple[str, ...] = ("ar_tweet_accounts", "omp")
    # Sources that train label heads only (e.g. the abuse corpora), never the base model.
    head_only_sources: tuple[str, ...] = ()
    # Cap on rows per (source, label): keeps one big corpus from becoming the definition of a class.
    max_per_source_label: dict[str, int] = Field(default_factory=dict)
    default_max_per_source_label: int | None = None
    source_weights: dict[str, float] = Field(default_factory=dict)


class AugmentConfig(FrozenConfig):
    """Context augmentation so the model sees every label with full, partial and no article."""

    title_only_rate: float = 0.5
    no_article_rate: float = 0.35
    attach_article_rate: float = 0.35
