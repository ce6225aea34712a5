"""Shadow comparisons in the store: write them, count agreement, list the latest disagreements."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from serving.store.errors import StoreError, describe_error
from serving.store.records import utcnow
from serving.store.store import Store
from serving.store.tables import NO_SITE, shadow_table

DISAGREEMENTS_SHOWN = 20


@dataclass(frozen=True)
class Verdict:
    """One model's verdict on a comment: top label and decided action."""

    label: str
    action: str


def agrees(champion: Verdict, shadow: Verdict) -> bool:
    """Same decided action and same top label (see the module docstring)."""
    return champion.action == shadow.action and champion.label == shadow.label


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


def record_comparisons(store: Store, comparisons: Sequence[Comparison]) -> None:
    """Write comparisons in one transaction; StoreError when the store refuses."""
    if not comparisons:
        return

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
