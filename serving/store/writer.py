"""One write transaction's operations: audit rows, feedback, articles, webhook events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from serving.schema import LABEL_PATTERN, risk_of
from serving.store.errors import DuplicateEvent
from serving.store.records import (
    Article,
    AuditEntry,
    FeedbackEntry,
    FeedbackRecord,
    article_of,
    feedback_record_of,
    site_key,
    url_key,
    utcnow,
)
from serving.store.tables import (
    articles_table,
    audit_table,
    decisions_table,
    events_table,
    feedback_table,
    jobs_table,
    shadow_table,
)

# Tables that name a comment by (site, comment_id): a provisional id is replaced in all of them.
_COMMENT_TABLES = (audit_table, feedback_table, decisions_table, shadow_table)


class StoreWriter:
    """Writes inside one transaction (`Store.write()`): all of them commit together or none does."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def add_audit(self, entries: Sequence[AuditEntry]) -> list[int]:
        """Log decisions; returns their ids."""
        now = utcnow()
        ids = []
        for entry in entries:
            result = self._conn.execute(
                audit_table.insert().values(
                    comment_id=entry.comment_id,
                    site=site_key(entry.site),
                    article_id=entry.article_id,
                    text=entry.text,
                    author_id=entry.author_id,
                    label=entry.label,
                    action=entry.action,
                    decided_action=entry.decided_action,
                    decided_label=entry.decided_label,
                    scores=json.dumps(dict(entry.scores), sort_keys=True),
                    risk=risk_of(entry.scores),
                    model_name=entry.model_name,
                    model_version=entry.model_version,
                    source=entry.source,
                    created_at=now,
                )
            )
            ids.append(inserted_id(result))
        return ids

    def add_feedback(self, entry: FeedbackEntry) -> FeedbackRecord:
        """Record a verdict (the label must be lower_snake_case, or None when unknown)."""
        if entry.label is not None and not LABEL_PATTERN.match(entry.label):
            raise ValueError(f"label {entry.label!r} is not a lower_snake_case name")
        now = utcnow()
        values = {
            "comment_id": entry.comment_id,
            "site": site_key(entry.site),
            "label": entry.label,
            "moderator": entry.moderator,
            "source": entry.source,
            "text": entry.text,
            "article_id": entry.article_id,
            "article_title": entry.article_title,
            "article_text": entry.article_text,
            "created_at": now,
            "reason": entry.reason,
        }
        result = self._conn.execute(feedback_table.insert().values(**values))
        return feedback_record_of(_Row(id=inserted_id(result), **values))

    def put_article(self, article: Article, merge: bool = False) -> Article:
        """Insert or replace an article; with `merge`, fields given as None keep their stored values."""
        key = {"site": site_key(article.site), "article_id": article.article_id}
        fields = {"title": article.title, "text": article.text, "url": article.url, "source": article.source}
        existing = self._conn.execute(
            sa.select(articles_table).where(
                articles_table.c.site == key["site"], articles_table.c.article_id == key["article_id"]
            )
        ).first()
        if existing is not None and merge:
            fields = {
                name: value if value is not None else getattr(existing, name)
                for name, value in fields.items()
            }
        values = {
            **fields,
            "url_key": url_key(fields["url"]) if fields["url"] else None,
            "updated_at": utcnow(),
        }
        if existing is None:
            self._conn.execute(articles_table.insert().values(**key, **values))
        else:
            self._conn.execute(
                articles_table.update()
                .where(articles_table.c.site == key["site"], articles_table.c.article_id == key["article_id"])
                .values(**values)
            )
        return article_of(_Row(**key, **values))

    def add_event(self, source: str, event_id: str, body_sha256: str, status: int, response: Any) -> None:
        """Remember a webhook event and its answer; DuplicateEvent when the id is already known."""
        known = self._conn.execute(
            sa.select(events_table.c.event_id).where(
                events_table.c.source == source, events_table.c.event_id == event_id
            )
        ).first()
        if known is not None:
            raise DuplicateEvent(f"event {event_id} was already handled")
        self._conn.execute(
            events_table.insert().values(
                source=source,
                event_id=event_id,
                body_sha256=body_sha256,
                status=status,
                response=json.dumps(response, ensure_ascii=False) if response is not None else None,
                created_at=utcnow(),
            )
        )

    def add_job(self, kind: str, site: str | None, ref: str, detail: str | None = None) -> bool:
        """Queue work for another server, due now; False when the same (kind, site, ref) already waits."""
        key = {"kind": kind, "site": site_key(site), "ref": ref}
        waiting = self._conn.execute(
            sa.select(jobs_table.c.id).where(*(jobs_table.c[name] == value for name, value in key.items()))
        ).first()
        if waiting is not None:
            return False
        now = utcnow()
        self._conn.execute(
            jobs_table.insert().values(
                **key, detail=detail, attempts=0, next_attempt_at=now, last_error=None, created_at=now
            )
        )
        return True

    def finish_job(self, job_id: int) -> None:
        """Done: the job's row goes (a later event about the same ref queues a new one)."""
        self._conn.execute(jobs_table.delete().where(jobs_table.c.id == job_id))

    def job_failed(self, job_id: int, error: str, retry_at: datetime) -> None:
        """Count a failed attempt and when to try again."""
        self._conn.execute(
            jobs_table.update()
            .where(jobs_table.c.id == job_id)
            .values(attempts=jobs_table.c.attempts + 1, last_error=error[:500], next_attempt_at=retry_at)
        )

    def link_comment(self, site: str | None, provisional_id: str, comment_id: str) -> int:
        """Give rows recorded under a provisional id (Coral's phase sends none) the real comment id."""
        if provisional_id == comment_id:
            return 0
        changed = 0
        for table in _COMMENT_TABLES:
            result = self._conn.execute(
                table.update()
                .where(table.c.site == site_key(site), table.c.comment_id == provisional_id)
                .values(comment_id=comment_id)
            )
            changed += int(result.rowcount or 0)
        return changed


def inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class _Row:
    """Attribute access over a dict, to build records from the values just written."""

    def __init__(self, **values: Any):
        self.__dict__.update(values)
