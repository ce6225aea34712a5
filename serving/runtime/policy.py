"""Per-site moderation policy on top of the model's decision: thresholds, trusted authors, observe mode.

Pure functions over immutable values, so they are unit-tested without a model or an app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from serving.model.decisions import APPROVE, REJECT, REVIEW, Thresholds
from serving.settings import SitePolicy

ENFORCE = "enforce"
OBSERVE = "observe"


@dataclass(frozen=True)
class SiteRules:
    """A site's policy resolved against one model: effective thresholds plus who is trusted."""

    thresholds: Thresholds
    trusted_authors: frozenset[str]
    mode: str


@dataclass(frozen=True)
class PolicyDecision:
    """What the CMS should do (`action`) and what the policy decided (`decided_action`)."""

    action: str
    decided_action: str
    label: str | None
    mode: str
    trusted_author: bool


def resolve_sites(base: Thresholds, sites: Mapping[str, SitePolicy]) -> dict[str, SiteRules]:
    """Each configured site's rules, with its threshold overrides merged over the model's."""
    return {
        site: SiteRules(
            thresholds=base.with_overrides(policy.reject_at, policy.review_at),
            trusted_authors=frozenset(author.strip() for author in policy.trusted_authors),
            mode=policy.mode,
        )
        for site, policy in sites.items()
    }


def unknown_labels(sites: Mapping[str, SitePolicy], labels: tuple[str, ...]) -> dict[str, list[str]]:
    """Per site, the override labels the model does not have (likely typos in the settings)."""
    problems = {}
    for site, policy in sites.items():
        missing = sorted((set(policy.reject_at) | set(policy.review_at)) - set(labels))
        if missing:
            problems[site] = missing
    return problems


def apply_policy(
    model_action: str, decided_label: str | None, rules: SiteRules | None, author: str | None
) -> PolicyDecision:
    """Turn the model's threshold decision into the site's decision and the CMS action."""
    action = model_action
    trusted = bool(rules and author is not None and author.strip() in rules.trusted_authors)
    if trusted and action == REJECT:
        # Trusted authors are never removed by a machine: a person looks at it instead.
        action = REVIEW
    mode = rules.mode if rules else ENFORCE
    return PolicyDecision(
        action=APPROVE if mode == OBSERVE else action,
        decided_action=action,
        label=decided_label if action != APPROVE else None,
        mode=mode,
        trusted_author=trusted,
    )
