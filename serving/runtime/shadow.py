"""Shadow mode: the challenger scores every comment beside the champion; both verdicts are recorded.

The champion alone answers the caller. After the answer has gone out, the shadow model scores the
same comments under the same site policy, and each comparison is counted in this process and
written to the `shadow_audit` table of the store, so the agreement rate survives restarts and
covers every worker.

**Agreement**: champion and shadow agree on a comment when both reach the same *decided action*
(approve / review / reject under the site's thresholds and trusted authors, before observe mode
turns it into approve) AND the same *label* (the label each gives the comment: the decided one, or
on_topic when approved). Anything else is a
disagreement, the cases a moderator should look at before the challenger is promoted.

The queue page uses `shadow_summary`, `agreement_summary` and `recent_disagreements`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from serving.model.moderation import CommentInput
from serving.runtime.loaded import LoadedModel
from serving.runtime.metrics import ServiceMetrics
from serving.runtime.policy import apply_policy
from serving.store.errors import StoreError
from serving.store.shadow import (
    DISAGREEMENTS_SHOWN,
    AgreementSummary,
    Comparison,
    PairKey,
    ShadowSummary,
    Verdict,
    agrees,
    record_comparisons,
    shadow_summary,
)
from serving.store.store import Store

logger = logging.getLogger("raqib.shadow")


# Disagreements remembered in memory, for /v1/model while the store is down (all version pairs).
RECENT_KEPT = 100


@dataclass(frozen=True)
class ShadowCase:
    """One comment as the champion judged it: what the shadow needs to judge it the same way."""

    comment: CommentInput
    comment_id: str | None
    site: str | None
    author: str | None
    champion_name: str
    champion_version: str
    champion: Verdict


def compare(shadow: LoadedModel, cases: Sequence[ShadowCase], source: str) -> list[Comparison]:
    """Score the cases with the shadow model under their sites' policies and compare with the champion."""
    if not cases:
        return []
    rules = [shadow.rules_for(case.site) for case in cases]
    thresholds = (
        None
        if all(rule is None for rule in rules)
        else [rule.thresholds if rule else shadow.model.thresholds for rule in rules]
    )
    # No explanations: nobody reads the shadow's reasons, and they are most of the scoring cost.
    scored = shadow.model.score([case.comment for case in cases], thresholds, explain=False)
    comparisons = []
    for case, rule, result in zip(cases, rules, scored, strict=True):
        decision = apply_policy(result.action, result.decided_label, rule, case.author)
        verdict = Verdict(label=result.label, action=decision.decided_action)
        comparisons.append(
            Comparison(
                comment_id=case.comment_id,
                site=case.site,
                source=source,
                champion_name=case.champion_name,
                champion_version=case.champion_version,
                champion=case.champion,
                shadow_name=shadow.name,
                shadow_version=shadow.version,
                shadow=verdict,
                shadow_scores=result.scores,
                agree=agrees(case.champion, verdict),
            )
        )
    return comparisons


# --- the store -------------------------------------------------------------------------------------


class ShadowTracker:
    """This process's shadow counters and latest disagreements, and the batched writes of comparisons."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[PairKey, bool]] = Counter()
        self._recent: deque[Comparison] = deque(maxlen=RECENT_KEPT)
        self.errors = 0
        # Group commit: requests finishing while a write is under way share the next transaction,
        # so shadow rows cost one commit (one fsync on SQLite) per burst, not one per request.
        self._pending: list[tuple[Store, list[Comparison]]] = []
        self._commit_lock = threading.Lock()

    def run(
        self,
        shadow: LoadedModel,
        cases: Sequence[ShadowCase],
        store: Store | None,
        metrics: ServiceMetrics,
        source: str,
    ) -> None:
        """Score, count and record the cases with the shadow; never raises (it runs after the answer)."""
        if not cases:
            return
        try:
            comparisons = compare(shadow, cases, source)
        except Exception as exc:
            with self._lock:
                self.errors += len(cases)
            metrics.shadow_errors.inc(len(cases))
            # The class only: an exception message may quote the comment being scored.
            logger.warning(
                "shadow model %s %s failed on %d comment(s): %s (the champion's answers stand)",
                shadow.name,
                shadow.version,
                len(cases),
                exc.__class__.__name__,
            )
            logger.debug("shadow failure", exc_info=True)
            return
        self._count(comparisons, metrics)
        if store is not None:
            self._record(store, comparisons)

    def _count(self, comparisons: Sequence[Comparison], metrics: ServiceMetrics) -> None:
        agreed = sum(c.agree for c in comparisons)
        with self._lock:
            for c in comparisons:
                self._counts[((c.champion_version, c.shadow_name, c.shadow_version), c.agree)] += 1
                if not c.agree:
                    self._recent.append(c)
        if agreed:
            metrics.shadow_agreement.labels(agree="true").inc(agreed)
        if len(comparisons) - agreed:
            metrics.shadow_agreement.labels(agree="false").inc(len(comparisons) - agreed)

    def _record(self, store: Store, comparisons: list[Comparison]) -> None:
        with self._lock:
            self._pending.append((store, comparisons))
        with self._commit_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            by_store: dict[int, tuple[Store, list[Comparison]]] = {}
            for target, rows in batch:
                by_store.setdefault(id(target), (target, []))[1].extend(rows)
            for target, rows in by_store.values():
                try:
                    record_comparisons(target, rows)
                except StoreError as exc:
                    # Statistics, not decisions: a lost row is logged; the request already succeeded.
                    logger.warning("%d shadow comparison(s) not recorded: %s", len(rows), exc)

    def process_summary(
        self, champion_version: str, shadow_name: str, shadow_version: str, limit: int = DISAGREEMENTS_SHOWN
    ) -> ShadowSummary:
        """This process's counts and latest disagreements for one champion/shadow pair."""
        key = (champion_version, shadow_name, shadow_version)
        with self._lock:
            agreed = self._counts[(key, True)]
            compared = agreed + self._counts[(key, False)]
            recent = [
                c
                for c in reversed(self._recent)
                if (c.champion_version, c.shadow_name, c.shadow_version) == key
            ]
        return ShadowSummary(
            summary=AgreementSummary(compared=compared, agreed=agreed),
            disagreements=recent[:limit],
            counted_in="process",
        )

    def report(
        self,
        store: Store | None,
        champion_version: str,
        shadow_name: str,
        shadow_version: str,
        limit: int = DISAGREEMENTS_SHOWN,
    ) -> ShadowSummary:
        """The pair's summary from the store (every worker, across restarts), else from this process."""
        if store is not None:
            try:
                return shadow_summary(
                    store,
                    limit,
                    champion_version=champion_version,
                    shadow_name=shadow_name,
                    shadow_version=shadow_version,
                )
            except StoreError as exc:
                logger.warning("shadow summary unavailable from the store, showing this process's: %s", exc)
        return self.process_summary(champion_version, shadow_name, shadow_version, limit)
