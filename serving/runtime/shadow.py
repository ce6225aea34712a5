"""Shadow mode: the challenger scores every comment beside the champion; both verdicts are recorded.

The champion alone answers the caller. After the answer has gone out, the shadow model scores the
same comments under the same site policy, and each comparison is counted in this process and
written to the `shadow_audit` table of the store, so the agreement rate survives restarts and
covers every worker.

**Agreement**: champion and shadow agree on a comment when both reach the same *decided action*
(approve / review / reject under the site's thresholds and trusted authors, before observe mode
turns it into approve) AND the same *top label* (the most probable label). Anything else is a
disagreement, the cases a moderator should look at before the challenger is promoted.

The queue page uses `shadow_summary`, `agreement_summary` and `recent_disagreements`.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from serving.model.moderation import CommentInput
from serving.runtime.metrics import ServiceMetrics
from serving.runtime.policy import apply_policy
from serving.store.store import NO_SITE, Store, StoreError, UTCDateTime, describe_error, utcnow

if TYPE_CHECKING:  # state.py imports this module: a runtime import back would be circular
    from serving.runtime.holder import LoadedModel

logger = logging.getLogger("raqib.shadow")

DISAGREEMENTS_SHOWN = 20
# Disagreements remembered in memory, for /v1/model while the store is down (all version pairs).
RECENT_KEPT = 100

# Its own MetaData and table, beside the store's: the store's schema (and its owner) is untouched.
shadow_metadata = sa.MetaData()

shadow_table = sa.Table(
    "shadow_audit",
    shadow_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("comment_id", sa.Text),
    # '' for no site, as in the store's audit table, so the two join on (site, comment_id).
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("champion_name", sa.Text, nullable=False),
    sa.Column("champion_version", sa.Text, nullable=False),
    sa.Column("champion_label", sa.Text, nullable=False),
    sa.Column("champion_action", sa.Text, nullable=False),
    sa.Column("shadow_name", sa.Text, nullable=False),
    sa.Column("shadow_version", sa.Text, nullable=False),
    sa.Column("shadow_label", sa.Text, nullable=False),
    sa.Column("shadow_action", sa.Text, nullable=False),
    sa.Column("shadow_scores", sa.Text, nullable=False),
    sa.Column("agree", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Serves both the agreement count and the latest disagreements of one champion/shadow pair.
    sa.Index("ix_shadow_pair", "shadow_version", "champion_version", "agree"),
    sa.Index("ix_shadow_comment", "site", "comment_id"),
)


@dataclass(frozen=True)
class Verdict:
    """One model's verdict on a comment: top label and decided action."""

    label: str
    action: str


def agrees(champion: Verdict, shadow: Verdict) -> bool:
    """Same decided action and same top label (see the module docstring)."""
    return champion.action == shadow.action and champion.label == shadow.label


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


@dataclass(frozen=True)
class Comparison:
    """Champion and shadow verdicts on one comment (no comment text: the audit log has it)."""

    comment_id: str | None
    site: str | None
    source: str
    champion_name: str
    champion_version: str
    champion: Verdict
    shadow_name: str
    shadow_version: str
    shadow: Verdict
    shadow_scores: dict[str, float]
    agree: bool
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class AgreementSummary:
    """How many comments both models scored, and on how many they agreed."""

    compared: int
    agreed: int

    @property
    def agreement_rate(self) -> float | None:
        """agreed / compared, or None before anything was compared."""
        return self.agreed / self.compared if self.compared else None


@dataclass(frozen=True)
class ShadowSummary:
    """Agreement counts and the most recent disagreements, newest first."""

    summary: AgreementSummary
    disagreements: list[Comparison]
    counted_in: Literal["store", "process"] = "store"


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

_tables_ready: weakref.WeakSet[Store] = weakref.WeakSet()
_tables_lock = threading.Lock()


@contextmanager
def _writing(store: Store) -> Iterator[Connection]:
    # The store's own write transaction: it serialises writers in this process (an in-memory store
    # shares one connection between threads) and opens SQLite writes with BEGIN IMMEDIATE.
    with store.write() as writer:
        yield writer._conn


@contextmanager
def _reading(store: Store) -> Iterator[Connection]:
    try:
        with store.engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"the store cannot read shadow results: {describe_error(exc)}") from None


def ensure_tables(store: Store) -> None:
    """Create the shadow table in this store if it is missing (once per open store)."""
    with _tables_lock:
        if store in _tables_ready:
            return
        with _writing(store) as conn:
            shadow_metadata.create_all(conn)
        _tables_ready.add(store)


def record_comparisons(store: Store, comparisons: Sequence[Comparison]) -> None:
    """Write comparisons in one transaction; StoreError when the store refuses."""
    if not comparisons:
        return
    ensure_tables(store)
    rows = [
        {
            "comment_id": c.comment_id,
            "site": c.site or NO_SITE,
            "source": c.source,
            "champion_name": c.champion_name,
            "champion_version": c.champion_version,
            "champion_label": c.champion.label,
            "champion_action": c.champion.action,
            "shadow_name": c.shadow_name,
            "shadow_version": c.shadow_version,
            "shadow_label": c.shadow.label,
            "shadow_action": c.shadow.action,
            "shadow_scores": json.dumps(c.shadow_scores, sort_keys=True),
            "agree": c.agree,
            "created_at": c.created_at,
        }
        for c in comparisons
    ]
    with _writing(store) as conn:
        conn.execute(shadow_table.insert(), rows)


def _pair_filter(
    champion_version: str | None, shadow_name: str | None, shadow_version: str | None
) -> list[sa.ColumnElement[bool]]:
    table = shadow_table.c
    conditions = []
    if champion_version is not None:
        conditions.append(table.champion_version == champion_version)
    if shadow_name is not None:
        conditions.append(table.shadow_name == shadow_name)
    if shadow_version is not None:
        conditions.append(table.shadow_version == shadow_version)
    return conditions


def agreement_summary(
    store: Store,
    champion_version: str | None = None,
    shadow_name: str | None = None,
    shadow_version: str | None = None,
) -> AgreementSummary:
    """Comments compared and agreed on, over every recorded comparison (or one champion/shadow pair)."""
    ensure_tables(store)
    agreed = sa.func.coalesce(sa.func.sum(sa.case((shadow_table.c.agree, 1), else_=0)), 0)
    query = sa.select(sa.func.count(), agreed).where(
        *_pair_filter(champion_version, shadow_name, shadow_version)
    )
    with _reading(store) as conn:
        compared, agreed_count = conn.execute(query).one()
    return AgreementSummary(compared=int(compared), agreed=int(agreed_count))


def recent_disagreements(
    store: Store,
    limit: int = DISAGREEMENTS_SHOWN,
    champion_version: str | None = None,
    shadow_name: str | None = None,
    shadow_version: str | None = None,
) -> list[Comparison]:
    """The latest comments on which champion and shadow disagreed, newest first."""
    ensure_tables(store)
    query = (
        sa.select(shadow_table)
        .where(~shadow_table.c.agree, *_pair_filter(champion_version, shadow_name, shadow_version))
        .order_by(shadow_table.c.id.desc())
        .limit(limit)
    )
    with _reading(store) as conn:
        rows = conn.execute(query).all()
    return [_comparison(row) for row in rows]


def shadow_summary(
    store: Store,
    limit: int = DISAGREEMENTS_SHOWN,
    champion_version: str | None = None,
    shadow_name: str | None = None,
    shadow_version: str | None = None,
) -> ShadowSummary:
    """`agreement_summary` and `recent_disagreements` together (what /v1/model and the queue show)."""
    return ShadowSummary(
        summary=agreement_summary(store, champion_version, shadow_name, shadow_version),
        disagreements=recent_disagreements(store, limit, champion_version, shadow_name, shadow_version),
    )


def _comparison(row: sa.Row[tuple[object, ...]]) -> Comparison:
    return Comparison(
        comment_id=row.comment_id,
        site=row.site or None,
        source=row.source,
        champion_name=row.champion_name,
        champion_version=row.champion_version,
        champion=Verdict(label=row.champion_label, action=row.champion_action),
        shadow_name=row.shadow_name,
        shadow_version=row.shadow_version,
        shadow=Verdict(label=row.shadow_label, action=row.shadow_action),
        shadow_scores=json.loads(row.shadow_scores),
        agree=bool(row.agree),
        created_at=row.created_at,
    )


# --- per process -----------------------------------------------------------------------------------

PairKey = tuple[str, str, str]  # (champion_version, shadow_name, shadow_version)


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
