"""From scores to an action: per-label thresholds and the rule that makes them approve, review or reject."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from serving.schema import ACCEPTABLE_LABEL

APPROVE, REVIEW, REJECT = "approve", "review", "reject"
NEVER_REJECT = 1.0  # a reject_at at or above this never auto-rejects (thresholds.json, site settings)
ACTIONS = (APPROVE, REVIEW, REJECT)


@dataclass(frozen=True)
class Thresholds:
    """Per-label probability at which a comment is rejected, and at which it goes to review."""

    reject_at: Mapping[str, float]
    review_at: Mapping[str, float]
    # Labels whose review_at was chosen on sources the model never saw (a label head's): it is
    # final, and the "most likely label" fallback below never overrides it.
    final: frozenset[str] = frozenset()

    def with_overrides(
        self,
        reject_at: Mapping[str, float] | None = None,
        review_at: Mapping[str, float] | None = None,
    ) -> Thresholds:
        """A copy with some labels' thresholds replaced (per-site settings)."""
        return Thresholds(
            reject_at={**self.reject_at, **(reject_at or {})},
            review_at={**self.review_at, **(review_at or {})},
            final=self.final,
        )


def decide(
    scores: Mapping[str, float], thresholds: Thresholds, acceptable: str = ACCEPTABLE_LABEL
) -> tuple[str, str | None]:
    """Action for one comment, and the label that drove it (None when approved)."""
    risky = sorted(
        ((label, p) for label, p in scores.items() if label != acceptable),
        key=lambda item: item[1],
        reverse=True,
    )
    for label, p in risky:
        # reject_at >= 1.0 means "never auto-reject": a saturated probability (1.0 after
        # rounding) must not slip through the sentinel.
        reject_at = thresholds.reject_at.get(label, math.inf)
        if reject_at < NEVER_REJECT and p >= reject_at:
            return REJECT, label
    for label, p in risky:
        if p >= thresholds.review_at.get(label, math.inf):
            return REVIEW, label
    # A comment the model thinks is most likely not acceptable is never waved through, whatever
    # the recall-derived review threshold says: it goes to a moderator. Not for final labels:
    # their review_at already says where a site the model never saw gets too many false holds.
    fallback = [(label, p) for label, p in risky if label not in thresholds.final]
    if fallback and fallback[0][1] > scores.get(acceptable, 0.0):
        return REVIEW, fallback[0][0]
    return APPROVE, None
