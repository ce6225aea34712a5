"""The queue's decisions in the store: each is a feedback row plus a log row naming the model version.

`FeedbackEntry` has no model version, so every queue decision also writes a `queue_decisions` row
(in the same transaction as its feedback row) with the audit row it answered, that row's model
name and version, the moderator and, after an undo, when it was undone. Undo deletes the feedback
row (the store's `pending()` treats any feedback row as an answer) and keeps the log row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from serving.store.errors import StoreConflict, StoreError, describe_error
from serving.store.records import Article, AuditRecord, FeedbackEntry, utcnow
from serving.store.store import Store
from serving.store.tables import NO_SITE, audit_table, decisions_table, feedback_table
from serving.store.writer import StoreWriter

QUEUE_SOURCE = "queue"


class AlreadyDecided(StoreConflict):
    """The comment already has a verdict (another moderator, or a CMS, was first)."""

    def __init__(self, label: str | None, moderator: str | None):
        super().__init__("the comment already has a verdict")
        self.label = label
        self.moderator = moderator


class DecisionNotFound(StoreError):
    """No decision with this id by this moderator."""


class AlreadyUndone(StoreConflict):
    """The decision was undone before."""


@dataclass(frozen=True)
class DecisionRecord:
    """A queue decision as logged."""

    id: int
    feedback_id: int
    audit_id: int
    comment_id: str
    site: str | None
    decision: str
    label: str
    moderator: str
    model_name: str
    model_version: str
    created_at: datetime
    undone_at: datetime | None


@dataclass(frozen=True)
class UndoResult:
    """An undone decision, and whether its comment is pending again."""

    decision: DecisionRecord
    pending: bool


def site_key(site: str | None) -> str:
    return site if site else NO_SITE


class _Values:
    """Attribute access over a dict, to build records from the values just written."""

    def __init__(self, **values: Any):
        self.__dict__.update(values)


def _decision(row: Any) -> DecisionRecord:
    return DecisionRecord(
        id=row.id,
        feedback_id=row.feedback_id,
        audit_id=row.audit_id,
        comment_id=row.comment_id,
        site=row.site or None,
        decision=row.decision,
        label=row.label,
        moderator=row.moderator,
        model_name=row.model_name,
        model_version=row.model_version,
        created_at=row.created_at,
        undone_at=row.undone_at,
    )


@contextmanager
def _transaction(store: Store) -> Iterator[Connection]:
    """One write transaction over the store's engine, for a feedback row and its log row together."""
    try:
        with store.engine.connect() as conn:
            # The store's own write flag: on SQLite it makes the transaction BEGIN IMMEDIATE, so the
            # check-then-write below cannot interleave with another writer.
            conn.execution_options(raqib_write=True)
            with conn.begin():
                yield conn
    except IntegrityError as exc:
        raise StoreConflict(f"the write collided with another: {describe_error(exc)}") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"the store cannot write: {describe_error(exc)}") from None


def audit_row(store: Store, audit_id: int) -> AuditRecord | None:
    """The audit row with this id (only rows with a comment id can be decided), or None."""
    try:
        with store.engine.connect() as conn:
            key = conn.execute(
                sa.select(audit_table.c.comment_id, audit_table.c.site).where(audit_table.c.id == audit_id)
            ).first()
    except SQLAlchemyError as exc:
        raise StoreError(f"the store cannot read: {describe_error(exc)}") from None
    if key is None or key.comment_id is None:
        return None
    rows = store.audit_for(key.comment_id, key.site or None)
    return next((row for row in rows if row.id == audit_id), None)


def latest_audit(store: Store, comment_id: str, site: str | None) -> AuditRecord | None:
    """The latest audit row of a comment, or None."""
    rows = store.audit_for(comment_id, site)
    return rows[-1] if rows else None


def record_decision(
    store: Store,
    audit: AuditRecord,
    decision: str,
    label: str,
    moderator: str,
    article: Article | None,
) -> DecisionRecord:
    """Write the feedback row and its log row in one transaction; AlreadyDecided if a verdict exists."""
    assert audit.comment_id is not None
    site = site_key(audit.site)
    with _transaction(store) as conn:
        # Two moderators (workers, replicas) deciding one comment at once: on PostgreSQL neither
        # transaction sees the other's uncommitted feedback row, so both would write one. Locking
        # the comment's audit rows first makes the second wait until the first commits; its check
        # below (a new statement, so a new snapshot under READ COMMITTED) then sees that verdict.
        # SQLite renders no FOR UPDATE: its BEGIN IMMEDIATE already serialises writers.
        conn.execute(
            sa.select(audit_table.c.id)
            .where(audit_table.c.site == site, audit_table.c.comment_id == audit.comment_id)
            .order_by(audit_table.c.id)
            .with_for_update()
        ).all()
        existing = conn.execute(
            sa.select(feedback_table.c.label, feedback_table.c.moderator)
            .where(feedback_table.c.site == site, feedback_table.c.comment_id == audit.comment_id)
            .order_by(feedback_table.c.id.desc())
            .limit(1)
        ).first()
        if existing is not None:
            raise AlreadyDecided(existing.label, existing.moderator)
        feedback = StoreWriter(conn).add_feedback(
            FeedbackEntry(
                comment_id=audit.comment_id,
                label=label,
                source=QUEUE_SOURCE,
                site=audit.site,
                moderator=moderator,
                text=audit.text,
                article_id=audit.article_id,
                # The article as the moderator saw it, so the export keeps it if the article changes.
                article_title=article.title if article else None,
                article_text=article.text if article else None,
            )
        )
        values = {
            "feedback_id": feedback.id,
            "audit_id": audit.id,
            "comment_id": audit.comment_id,
            "site": site,
            "decision": decision,
            "label": label,
            "moderator": moderator,
            "model_name": audit.model_name,
            "model_version": audit.model_version,
            "created_at": feedback.created_at,
            "undone_at": None,
        }
        result = conn.execute(decisions_table.insert().values(**values))
        key = result.inserted_primary_key
        assert key is not None
        return _decision(_Values(id=int(key[0]), **values))


def undo_decision(store: Store, decision_id: int, moderator: str) -> UndoResult:
    """Delete the decision's feedback row and mark it undone; only its own moderator may."""
    with _transaction(store) as conn:
        # Locked, so a second undo of the same decision waits and then finds it undone.
        row = conn.execute(
            sa.select(decisions_table).where(decisions_table.c.id == decision_id).with_for_update()
        ).first()
        if row is None or row.moderator != moderator:
            raise DecisionNotFound(f"no decision {decision_id} by this moderator")
        if row.undone_at is not None:
            raise AlreadyUndone(f"decision {decision_id} was already undone")
        now = utcnow()
        conn.execute(feedback_table.delete().where(feedback_table.c.id == row.feedback_id))
        conn.execute(
            decisions_table.update().where(decisions_table.c.id == decision_id).values(undone_at=now)
        )
        others = conn.execute(
            sa.select(sa.func.count())
            .select_from(feedback_table)
            .where(feedback_table.c.site == row.site, feedback_table.c.comment_id == row.comment_id)
        ).scalar_one()
        undone = _decision(_Values(**{**row._asdict(), "undone_at": now}))
    return UndoResult(decision=undone, pending=others == 0)


def decisions_for(store: Store, comment_id: str, site: str | None = None) -> list[DecisionRecord]:
    """Every queue decision on a comment, oldest first (undone ones included)."""
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(decisions_table)
                .where(decisions_table.c.site == site_key(site), decisions_table.c.comment_id == comment_id)
                .order_by(decisions_table.c.id)
            ).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"the store cannot read: {describe_error(exc)}") from None
    return [_decision(row) for row in rows]


def audited_sites(store: Store) -> list[str | None]:
    """The sites that have audited comments (None for comments without a site), for the site filter."""
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_table.c.site)
                .where(audit_table.c.comment_id.is_not(None))
                .distinct()
                .order_by(audit_table.c.site)
            ).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"the store cannot read: {describe_error(exc)}") from None
    return [row.site or None for row in rows]
