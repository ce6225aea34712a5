"""One write transaction's operations: audit rows, feedback, articles, webhook events."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
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
_AUDIT_INSERT = audit_table.insert()
_AUDIT_INSERT_RETURNING = _AUDIT_INSERT.returning(audit_table.c.id, sort_by_parameter_order=True)
_AUDIT_COLUMNS = tuple(column.name for column in audit_table.columns if column.name != "id")
# Rows per INSERT on SQLite: 15 values each stays far below its 32,766 host parameters per statement.
_SQLITE_ROWS_PER_INSERT = 500


class StoreWriter:
    """Writes inside one transaction (`Store.write()`): all of them commit together or none does."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def add_audit(self, entries: Sequence[AuditEntry]) -> list[int]:
        """Log decisions; returns their ids, in the order of `entries`."""
        if not entries:
            return []
        now = utcnow()
        rows = [
            {
                "comment_id": entry.comment_id,
                "site": site_key(entry.site),
                "article_id": entry.article_id,
                "text": entry.text,
                "author_id": entry.author_id,
                "label": entry.label,
                "action": entry.action,
                "decided_action": entry.decided_action,
                "decided_label": entry.decided_label,
                "scores": json.dumps(dict(entry.scores), sort_keys=True),
                "risk": risk_of(entry.scores),
                "model_name": entry.model_name,
                "model_version": entry.model_version,
                "source": entry.source,
                "created_at": now,
            }
            for entry in entries
        ]
        dialect = self._conn.dialect
        if dialect.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 35):
            return _sqlite_audit_insert(self._conn, rows)
        if dialect.insert_executemany_returning_sort_by_parameter_order:
            # One statement built once (compiled once, then cached), run over every row.
            return [int(row[0]) for row in self._conn.execute(_AUDIT_INSERT_RETURNING, rows)]
        return [inserted_id(self._conn.execute(_AUDIT_INSERT, row)) for row in rows]

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


def _sqlite_audit_insert(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Audit rows as one `INSERT ... VALUES (...), (...) RETURNING id` run by the SQLite driver itself.

    Every scored comment writes one audit row before its answer, so this is on the request path:
    measured on 2 cores, SQLAlchemy's own INSERT (a statement per row, or its executemany with
    RETURNING) cost 0.35-0.8 ms of CPU per commit against ~0.2 ms for this, which sqlite3 prepares
    once per row count and keeps in its statement cache. It runs inside the caller's transaction on
    the same connection, with the column types' own bind processing (created_at reads back as written
    through SQLAlchemy). A driver error is re-raised as SQLAlchemy's, so `Store.write` words it.
    """
    processors = _sqlite_processors(conn.dialect)
    driver = conn.connection.driver_connection
    ids: list[int] = []
    for start in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
        chunk = rows[start : start + _SQLITE_ROWS_PER_INSERT]
        values = [
            processor(row[name]) if processor is not None else row[name]
            for row in chunk
            for name, processor in zip(_AUDIT_COLUMNS, processors, strict=True)
        ]
        try:
            returned = driver.execute(_sqlite_insert_sql(len(chunk)), values).fetchall()  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            # No parameters in the error: they carry comment text (the engine hides them the same way).
            raise sa.exc.DBAPIError.instance(
                "INSERT INTO audit ...", None, exc, sqlite3.Error, hide_parameters=True
            ) from None
        # A multi-row INSERT gives its rows increasing ids in VALUES order (the id is SQLite's rowid,
        # one above the largest, under this transaction's write lock); RETURNING lists them in no
        # promised order, so they are sorted back into it.
        ids += sorted(int(row[0]) for row in returned)
    return ids


@functools.cache
def _sqlite_insert_sql(count: int) -> str:
    one = "(" + ", ".join("?" * len(_AUDIT_COLUMNS)) + ")"
    return f"INSERT INTO audit ({', '.join(_AUDIT_COLUMNS)}) VALUES {', '.join([one] * count)} RETURNING id"


_processors_by_dialect: dict[type[Any], tuple[Callable[[Any], Any] | None, ...]] = {}


def _sqlite_processors(dialect: Any) -> tuple[Callable[[Any], Any] | None, ...]:
    """Each audit column's bind processor for this dialect (None: the value goes to the driver as it is)."""
    key = type(dialect)
    if key not in _processors_by_dialect:
        _processors_by_dialect[key] = tuple(
            audit_table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in _AUDIT_COLUMNS
        )
    return _processors_by_dialect[key]


def inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class _Row:
    """Attribute access over a dict, to build records from the values just written."""

    def __init__(self, **values: Any):
        self.__dict__.update(values)
