"""The durable store: articles, the audit log of every decision, moderator feedback, webhook events.

SQLAlchemy Core over one engine per app. The default is SQLite in WAL mode with `synchronous=FULL`
at `state_dir/raqib.db`; `store_url` may name any SQLAlchemy URL (e.g. PostgreSQL) instead. Every
write commits before the method returns, so a caller that answers 2xx afterwards answers for a
record that is on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from serving.schema import CANONICAL_COLUMNS
from serving.store.engine import create_store_engine, os_or_db_error, redacted
from serving.store.errors import StoreConflict, StoreError, describe_error
from serving.store.group_commit import GroupCommit
from serving.store.records import (
    EXPORT_TIME_FORMAT,
    Article,
    AuditEntry,
    AuditRecord,
    FeedbackEntry,
    FeedbackRecord,
    QueueOrder,
    RemoteJob,
    StoredEvent,
    article_of,
    as_aware,
    audit_record_of,
    feedback_record_of,
    remote_job_of,
    site_key,
    site_value,
    url_key,
)
from serving.store.schema_version import SchemaOutdated, check_revision, create_at_head, schema_revision
from serving.store.tables import (
    NO_SITE,
    articles_table,
    audit_table,
    events_table,
    feedback_table,
    jobs_table,
)
from serving.store.writer import StoreWriter

logger = logging.getLogger("raqib.store")


class Store:
    """Articles, audit log, feedback and webhook events over one SQLAlchemy engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # One writer at a time in this process; SQLite serialises processes itself (busy_timeout).
        self._write_lock = threading.Lock()
        self._audit = GroupCommit(self.write)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect, and create the tables in an empty database; StoreError when that fails.

        SchemaOutdated when the store was made by an older Raqib (`raqib db upgrade` migrates it).
        """
        try:
            engine = create_store_engine(url)
        except (OSError, SQLAlchemyError, ValueError, ImportError) as exc:  # ImportError: no DB driver
            raise StoreError(f"cannot open the store: {os_or_db_error(exc)}") from None
        store = cls(engine)
        try:
            with store.write() as writer:
                # Read and create in one write transaction: on SQLite (BEGIN IMMEDIATE) two workers
                # starting on an empty store take turns; on PostgreSQL the loser's StoreError is retried.
                revision = schema_revision(writer._conn)
                if revision is None:
                    create_at_head(writer._conn)
                else:
                    check_revision(revision)
        except StoreError:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Finish queued audit rows, then release every connection."""
        self._audit.close()
        self.engine.dispose()

    @property
    def location(self) -> str:
        """Where the store lives, with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    # --- transactions --------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[StoreWriter]:
        """One write transaction: committed (and on disk) when the block ends, rolled back on error."""
        try:
            with self._write_lock, self.engine.connect() as conn:
                conn.execution_options(raqib_write=True)
                with conn.begin():
                    yield StoreWriter(conn)
        except IntegrityError as exc:
            raise StoreConflict(f"the write collided with another: {describe_error(exc)}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"the store cannot write: {describe_error(exc)}") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"the store cannot read: {describe_error(exc)}") from None

    # --- articles ------------------------------------------------------------------------------

    def put_article(self, article: Article, merge: bool = False) -> Article:
        """Insert or replace an article (merge: keep stored values for fields given as None)."""
        with self.write() as writer:
            return writer.put_article(article, merge=merge)

    def get_article(self, article_id: str, site: str | None = None) -> Article | None:
        """The site's article with this id, else one stored without a site."""
        sites = [site_key(site), NO_SITE] if site else [NO_SITE]
        with self._read() as conn:
            rows = conn.execute(
                sa.select(articles_table).where(
                    articles_table.c.article_id == article_id, articles_table.c.site.in_(sites)
                )
            ).all()
        best = sorted(rows, key=lambda row: sites.index(row.site))
        return article_of(best[0]) if best else None

    def find_article_by_url(self, url: str, site: str | None = None) -> Article | None:
        """The article whose URL matches (`url_key`), preferring the same site and the latest update."""
        key = url_key(url)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(articles_table)
                .where(articles_table.c.url_key == key)
                .order_by(articles_table.c.updated_at.desc())
            ).all()
        if not rows:
            return None
        same_site = [row for row in rows if row.site == site_key(site)]
        return article_of((same_site or rows)[0])

    # --- audit ---------------------------------------------------------------------------------

    def submit_audit(self, entries: Sequence[AuditEntry]) -> Future[list[int]]:
        """Queue decisions for the audit log; the future resolves once they are committed (on disk)."""
        return self._audit.submit(list(entries))

    def submit_audit_from_loop(self, entries: Sequence[AuditEntry]) -> asyncio.Future[list[int]]:
        """`submit_audit` for a coroutine on the running event loop: await the returned future."""
        return self._audit.submit_from_loop(list(entries))

    def record_audit(self, entries: Sequence[AuditEntry]) -> list[int]:
        """Log scoring decisions; returns once they are committed (on disk)."""
        if not entries:
            return []
        return self.submit_audit(entries).result()

    def audit_for(self, comment_id: str, site: str | None = None) -> list[AuditRecord]:
        """Every logged decision on this comment, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(audit_table)
                .where(audit_table.c.comment_id == comment_id, audit_table.c.site == site_key(site))
                .order_by(audit_table.c.id)
            ).all()
        return [audit_record_of(row) for row in rows]

    def pending(
        self,
        site: str | None = None,
        action: str | None = None,
        label: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        order: QueueOrder = "risk",
        limit: int = 50,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """The moderators' queue: the latest decision on each comment that has no feedback yet."""
        # `action` is the decided action (what enforce mode does, also in observe mode); `label` the
        # decided label, else the top label; min/max_score bound `risk` (the highest probability of
        # a not-acceptable label). Order "risk": riskiest first; "time": newest first.
        latest = (
            sa.select(sa.func.max(audit_table.c.id).label("id"))
            .where(audit_table.c.comment_id.is_not(None))
            .group_by(audit_table.c.site, audit_table.c.comment_id)
            .subquery()
        )
        answered = sa.exists().where(
            feedback_table.c.site == audit_table.c.site,
            feedback_table.c.comment_id == audit_table.c.comment_id,
        )
        query = sa.select(audit_table).join(latest, audit_table.c.id == latest.c.id).where(~answered)
        if site is not None:
            query = query.where(audit_table.c.site == site_key(site))
        if action is not None:
            query = query.where(audit_table.c.decided_action == action)
        if label is not None:
            query = query.where(sa.func.coalesce(audit_table.c.decided_label, audit_table.c.label) == label)
        if min_score is not None:
            query = query.where(audit_table.c.risk >= min_score)
        if max_score is not None:
            query = query.where(audit_table.c.risk <= max_score)
        if order == "risk":
            query = query.order_by(audit_table.c.risk.desc(), audit_table.c.id.desc())
        elif order == "time":
            query = query.order_by(audit_table.c.created_at.desc(), audit_table.c.id.desc())
        else:
            raise ValueError(f"order must be 'risk' or 'time', not {order!r}")
        with self._read() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
        return [audit_record_of(row) for row in rows]

    # --- feedback ------------------------------------------------------------------------------

    def record_feedback(self, entry: FeedbackEntry) -> FeedbackRecord:
        """Record a moderator's verdict; on disk when this returns."""
        with self.write() as writer:
            return writer.add_feedback(entry)

    def feedback_since(self, since: datetime | None = None) -> list[FeedbackRecord]:
        """Every verdict recorded at or after `since` (all when None), oldest first."""
        query = sa.select(feedback_table).order_by(feedback_table.c.id)
        if since is not None:
            query = query.where(feedback_table.c.created_at >= as_aware(since))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [feedback_record_of(row) for row in rows]

    # --- webhook events ------------------------------------------------------------------------

    def get_event(self, source: str, event_id: str) -> StoredEvent | None:
        """A webhook event already handled, or None."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(events_table).where(
                    events_table.c.source == source, events_table.c.event_id == event_id
                )
            ).first()
        if row is None:
            return None
        return StoredEvent(
            source=row.source,
            event_id=row.event_id,
            body_sha256=row.body_sha256,
            status=row.status,
            response=json.loads(row.response) if row.response is not None else None,
            created_at=row.created_at,
        )

    # --- export --------------------------------------------------------------------------------

    # --- work waiting for another server ---------------------------------------------------------

    def due_jobs(self, now: datetime, limit: int = 20) -> list[RemoteJob]:
        """Jobs whose next attempt is due, oldest first."""
        query = (
            sa.select(jobs_table)
            .where(jobs_table.c.next_attempt_at <= as_aware(now))
            .order_by(jobs_table.c.next_attempt_at, jobs_table.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [remote_job_of(row) for row in conn.execute(query)]

    def waiting_jobs(self) -> list[RemoteJob]:
        """Every job still waiting, due or not (for operators and tests)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(jobs_table).order_by(jobs_table.c.id))
            return [remote_job_of(row) for row in rows]

    def job_failed(self, job_id: int, error: str, retry_at: datetime) -> None:
        """Count a failed attempt and when to try again."""
        with self.write() as writer:
            writer.job_failed(job_id, error, retry_at)

    def export_labels(
        self, since: datetime | None = None, skipped: Counter[str] | None = None
    ) -> Iterator[dict[str, str | None]]:
        """Canonical labelled records from feedback: the latest verdict per (site, comment_id) wins."""
        # Text comes from the feedback, else from the comment's latest audit row; the article from
        # the feedback, else the audited article id, completed from the article store. Author ids
        # are never exported. Verdicts without a label or without any known text are skipped and
        # counted in `skipped`, by reason.
        latest_feedback = (
            sa.select(sa.func.max(feedback_table.c.id).label("id"))
            .group_by(feedback_table.c.site, feedback_table.c.comment_id)
            .subquery()
        )
        audits = (
            sa.select(
                audit_table.c.site,
                audit_table.c.comment_id,
                sa.func.max(audit_table.c.id).label("latest_id"),
                sa.func.min(audit_table.c.created_at).label("first_seen"),
            )
            .where(audit_table.c.comment_id.is_not(None))
            .group_by(audit_table.c.site, audit_table.c.comment_id)
            .subquery()
        )
        latest_audit = audit_table.alias("latest_audit")
        query = (
            sa.select(
                feedback_table,
                latest_audit.c.text.label("audit_text"),
                latest_audit.c.article_id.label("audit_article_id"),
                audits.c.first_seen,
            )
            .join(latest_feedback, feedback_table.c.id == latest_feedback.c.id)
            .outerjoin(
                audits,
                sa.and_(
                    audits.c.site == feedback_table.c.site, audits.c.comment_id == feedback_table.c.comment_id
                ),
            )
            .outerjoin(latest_audit, latest_audit.c.id == audits.c.latest_id)
            .order_by(feedback_table.c.site, feedback_table.c.comment_id)
        )
        if since is not None:
            query = query.where(feedback_table.c.created_at >= as_aware(since))
        with self._read() as conn:
            rows = conn.execute(query).all()
        articles: dict[tuple[str | None, str], Article | None] = {}
        for row in rows:
            text = row.text or row.audit_text
            if row.label is None:
                if skipped is not None:
                    skipped["no label (moderator rejected, reason unknown)"] += 1
                continue
            if not text or not text.strip():
                if skipped is not None:
                    skipped["no comment text known"] += 1
                continue
            site = site_value(row.site)
            article_id = row.article_id or row.audit_article_id
            title, body = row.article_title, row.article_text
            if article_id and (title is None or body is None):
                cache_key = (site, article_id)
                if cache_key not in articles:
                    articles[cache_key] = self.get_article(article_id, site)
                stored = articles[cache_key]
                if stored is not None:
                    title = title if title is not None else stored.title
                    body = body if body is not None else stored.text
            seen: datetime = row.first_seen or row.created_at
            record: dict[str, str | None] = {
                "comment_id": row.comment_id,
                "text": text,
                "label": row.label,
                "article_id": article_id,
                "article_title": title,
                "article_text": body,
                "author": None,
                "site": site,
                "source": "feedback",
                "created_at": seen.astimezone(UTC).strftime(EXPORT_TIME_FORMAT),
            }
            yield {column: record[column] for column in CANONICAL_COLUMNS}


def body_digest(body: bytes) -> str:
    """sha256 of a request body, to tell a replayed event from a different one reusing its id."""
    return hashlib.sha256(body).hexdigest()


class StoreHolder:
    """The app's store, or why it is unavailable; retries opening now and then while it is down."""

    RETRY_SECONDS = 30.0

    def __init__(self, url: str):
        self._url = url
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._last_attempt = -float("inf")
        self.error: str | None = None
        # Audit writes failing since the last one that worked (0: none): logged once per outage.
        self._audit_failures = 0

    @property
    def current(self) -> Store | None:
        """The open store, or None."""
        return self._store

    @property
    def retry_due(self) -> bool:
        """True when the store is down and another attempt to open it is due."""
        return self._store is None and time.monotonic() - self._last_attempt >= self.RETRY_SECONDS

    def open(self, only_if_due: bool = False) -> Store | None:
        """Try to open the store (blocking); on failure remember why and return None.

        SchemaOutdated is raised too unless `only_if_due` (a request's retry): a server must not start
        on a store it would first have to migrate.
        """
        # `only_if_due`: requests that waited on the lock while an attempt failed do not each retry.
        with self._lock:
            if self._store is not None:
                return self._store
            if only_if_due and time.monotonic() - self._last_attempt < self.RETRY_SECONDS:
                return None
            self._last_attempt = time.monotonic()
            try:
                self._store = Store.open(self._url)
            except SchemaOutdated as exc:
                self.error = str(exc)
                logger.error("store at %s cannot be used: %s", redacted(self._url), exc)
                if not only_if_due:
                    # At start-up: refuse to serve rather than score unaudited until someone notices.
                    raise
                # Found by a request's retry (the store was down at start): the server is up, so the
                # store stays unavailable and its 503s carry the command that fixes it.
                return None
            except StoreError as exc:
                self.error = str(exc)
                logger.error(
                    "store unavailable at %s: %s (scoring goes on unaudited; retrying every %d s)",
                    redacted(self._url),
                    exc,
                    self.RETRY_SECONDS,
                )
                return None
            self.error = None
            logger.info("store open at %s", self._store.location)
            return self._store

    def audit_failed(self, count: int, exc: StoreError) -> None:
        """Note decisions the audit log refused: an outage's first failure is logged, the rest counted."""
        with self._lock:
            first = self._audit_failures == 0
            self._audit_failures += count
        if first:
            # Once, not per request: a full disk would otherwise flood the log it is filling.
            logger.error(
                "%d decision(s) not written to the audit log: %s. Scoring goes on; decisions are not "
                "recorded until the store accepts writes again (see raqib_audit_failures_total).",
                count,
                exc,
            )
        else:
            logger.debug("%d more decision(s) not written to the audit log: %s", count, exc)

    def audit_succeeded(self) -> None:
        """Note a working audit write; ends (and logs the size of) an audit outage if one was going on."""
        if not self._audit_failures:  # the common case, without taking the lock
            return
        with self._lock:
            lost, self._audit_failures = self._audit_failures, 0
        if lost:
            logger.warning("audit log writes work again; %d decision(s) were not recorded meanwhile", lost)

    def close(self) -> None:
        """Close the store if it is open."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
