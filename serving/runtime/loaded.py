"""A loaded model with everything derived from it: the immutable snapshot a request reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from serving.model.moderation import ModerationModel
from serving.runtime.policy import SiteRules


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model with everything derived from it; never mutated, only replaced."""

    model: ModerationModel
    bundle_path: Path
    loaded_at: datetime
    sites: Mapping[str, SiteRules]

    @property
    def name(self) -> str:
        """The model's registered name."""
        return self.model.name

    @property
    def version(self) -> str:
        """The model's version string."""
        return self.model.version

    def rules_for(self, site: str | None) -> SiteRules | None:
        """The site's resolved rules, or None for a site without its own policy."""
        return self.sites.get(site) if site is not None else None


@dataclass(frozen=True)
class ShadowSlot:
    """The challenger scored beside the champion (shadow mode): its model, or why it is not loaded."""

    loaded: LoadedModel | None
    error: str | None
    name: str | None
    version: str | None
