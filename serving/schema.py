"""Facts every part of Raqib shares: labels, the canonical record's columns, risk, bundle and registry names.

This module is the bottom of both packages: it imports nothing of Raqib's, and each fact here is
defined nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Every labelled record, every export and the model's input DataFrame use these names.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "comment_id",
    "text",
    "label",
    "article_id",
    "article_title",
    "article_text",
    "author",
    "site",
    "source",
    "created_at",
)

# The columns the model reads; the rest ride along for grouping, reporting and audit.
MODEL_INPUT_COLUMNS: tuple[str, ...] = ("text", "article_title", "article_text")

ON_TOPIC = "on_topic"
OFF_TOPIC = "off_topic"
SPAM = "spam"
ABUSIVE = "abusive"
DEFAULT_LABELS: tuple[str, ...] = (ON_TOPIC, OFF_TOPIC, SPAM, ABUSIVE)

# A label a site may add beside the four: lower-case, starts with a letter, at most 40 characters.
LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# The label that means "fine to publish"; every other label is a reason to hold a comment.
ACCEPTABLE_LABEL = ON_TOPIC

# Where `raqib export` writes the champion and where the server and the batch tools look for it.
DEFAULT_BUNDLE_DIR = Path("models/champion")

# The registered model's name in MLflow, unless an experiment config names another.
DEFAULT_MODEL_NAME = "raqib-moderator"

MODEL_URI_PREFIX = "models:/"


def risk_of(scores: Mapping[str, float]) -> float:
    """How likely the comment is to be held: the highest probability of any label but the acceptable one."""
    return max((p for label, p in scores.items() if label != ACCEPTABLE_LABEL), default=0.0)


class ModelUriError(ValueError):
    """A string that is not `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""


@dataclass(frozen=True, slots=True)
class ModelUri:
    """A registered model version named by alias or by number."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        selector = f"@{self.alias}" if self.alias is not None else f"/{self.version}"
        return f"{MODEL_URI_PREFIX}{self.name}{selector}"


def is_model_uri(value: str) -> bool:
    """True for anything that claims to be a registry URI (it may still fail to parse)."""
    return value.startswith(MODEL_URI_PREFIX)


def parse_model_uri(uri: str) -> ModelUri:
    """`models:/NAME@ALIAS` or `models:/NAME/VERSION` → ModelUri; anything else raises ModelUriError.

    The name may not contain `@` or `/`, so `models:/a/b/c` is refused rather than guessed at.
    """
    rest = uri.removeprefix(MODEL_URI_PREFIX) if is_model_uri(uri) else ""
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name and alias and "/" not in name and "/" not in alias:
            return ModelUri(name=name, alias=alias)
    elif "/" in rest:
        name, _, version = rest.partition("/")
        if name and version and "/" not in version:
            return ModelUri(name=name, version=version)
    raise ModelUriError(f"model URI {uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
