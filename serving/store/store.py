"""The durable store: articles, the audit log of every decision, moderator feedback, webhook events.

SQLAlchemy Core over one engine per app. The default is SQLite in WAL mode with `synchronous=FULL`
at `state_dir/raqib.db`; `store_url` may name any SQLAlchemy URL (e.g. PostgreSQL) instead. Every
write commits before the method returns, so a caller that answers 2xx afterwards answers for a
record that is on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from serving.schema import ACCEPTABLE_LABEL, CANONICAL_COLUMNS

logger = logging.getLogger("raqib.store")

SCHEMA_VERSION = 1
DB_FILE = "raqib.db"
# Mirrors training.data.contract.LABEL_PATTERN (serving must not import training; a test keeps them equal).
LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
EXPORT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
NO_SITE = ""  # sites are part of keys; NULL never equals NULL in SQL, so "no site" is stored as ''

QueueOrder = Literal["risk", "time"]


class StoreError(RuntimeError):
    """The store cannot be opened, read or written; the message is safe to show (no comment text)."""


class StoreConflict(StoreError):
    """A write collided with a concurrent one (a unique key already taken); nothing was written."""


class DuplicateEvent(StoreConflict):
    """A webhook event id that is already recorded: its first answer stands."""


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive (UTC) so every backend sorts them."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Store as naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Read back as aware UTC."""
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = sa.MetaData()

meta_table = sa.Table(
    "raqib_meta",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

articles_table = sa.Table(
    "articles",
    metadata,
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("article_id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("url_key", sa.Text),
    sa.Column("source", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_articles_url_key", "url_key"),
)

audit_table = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("comment_id", sa.Text),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("article_id", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("author_id", sa.Text),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("decided_action", sa.Text, nullable=False),
    sa.Column("decided_label", sa.Text),
    sa.Column("scores", sa.Text, nullable=False),
    sa.Column("risk", sa.Float, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_audit_comment", "site", "comment_id"),
    sa.Index("ix_audit_created", "created_at"),
    sa.Index("ix_audit_risk", "risk"),
)

feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("comment_id", sa.Text, nullable=False),
    sa.Column("site", sa.Text, nullable=False),
    # NULL: a moderator acted (e.g. rejected in Coral) but no label is known; never exported.
    sa.Column("label", sa.Text),
    sa.Column("moderator", sa.Text),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("text", sa.Text),
    sa.Column("article_id", sa.Text),
    sa.Column("article_title", sa.Text),
    sa.Column("article_text", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_feedback_comment", "site", "comment_id"),
    sa.Index("ix_feedback_created", "created_at"),
)

events_table = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("body_sha256", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("response", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


def _site_key(site: str | None) -> str:
    return site if site else NO_SITE


def _site_value(key: str) -> str | None:
    return key or None


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


_TRACKING_PARAMS = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_[a-z]+)$")


def url_key(url: str) -> str:
    """The form of an article URL used for look-ups: no scheme, fragment, `www.` or tracking parameters."""
    raw = url.strip()
    if "://" not in raw and not raw.startswith("//"):
        raw = "//" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        # Not parseable as a URL ("http://[", a port out of range): it can only match itself.
        return url.strip()
    host = (parts.hostname or "").lower().removeprefix("www.")
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    path = unquote(parts.path).rstrip("/") or "/"
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k)
    ]
    return host + path + (f"?{urlencode(query)}" if query else "")


def risk_of(scores: Mapping[str, float]) -> float:
    """How likely the comment is not acceptable: the highest probability of any other label."""
    return max((p for label, p in scores.items() if label != ACCEPTABLE_LABEL), default=0.0)


@dataclass(frozen=True)
class Article:
    """An article comments are judged against."""

    article_id: str
    site: str | None = None
    title: str | None = None
    text: str | None = None
    url: str | None = None
    source: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One scoring decision to log."""

    text: str
    label: str
    action: str
    decided_action: str
    decided_label: str | None
    scores: Mapping[str, float]
    model_name: str
    model_version: str
    source: str
    comment_id: str | None = None
    site: str | None = None
    article_id: str | None = None
    author_id: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """A logged decision as stored."""

    id: int
    comment_id: str | None
    site: str | None
    article_id: str | None
    text: str
    author_id: str | None
    label: str
    action: str
    decided_action: str
    decided_label: str | None
    scores: dict[str, float]
    risk: float
    model_name: str
    model_version: str
    source: str
    created_at: datetime


@dataclass(frozen=True)
class FeedbackEntry:
    """A moderator's verdict on a comment to record."""

    comment_id: str
    label: str | None
    source: str
    site: str | None = None
    moderator: str | None = None
    text: str | None = None
    article_id: str | None = None
    article_title: str | None = None
    article_text: str | None = None


@dataclass(frozen=True)
class FeedbackRecord:
    """A recorded verdict."""

    id: int
    comment_id: str
    site: str | None
    label: str | None
    moderator: str | None
    source: str
    text: str | None
    article_id: str | None
    article_title: str | None
    article_text: str | None
    created_at: datetime


@dataclass(frozen=True)
class StoredEvent:
    """A webhook event already handled, with the answer it got."""

    source: str
    event_id: str
    body_sha256: str
    status: int
    response: Any
    created_at: datetime


def _audit_record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        comment_id=row.comment_id,
        site=_site_value(row.site),
        article_id=row.article_id,
        text=row.text,
        author_id=row.author_id,
        label=row.label,
        action=row.action,
        decided_action=row.decided_action,
        decided_label=row.decided_label,
        scores=json.loads(row.scores),
        risk=row.risk,
        model_name=row.model_name,
        model_version=row.model_version,
        source=row.source,
        created_at=row.created_at,
    )


def _feedback_record(row: Any) -> FeedbackRecord:
    return FeedbackRecord(
        id=row.id,
        comment_id=row.comment_id,
        site=_site_value(row.site),
        label=row.label,
        moderator=row.moderator,
        source=row.source,
        text=row.text,
        article_id=row.article_id,
        article_title=row.article_title,
        article_text=row.article_text,
        created_at=row.created_at,
    )


def _article(row: Any) -> Article:
    return Article(
        article_id=row.article_id,
        site=_site_value(row.site),
        title=row.title,
        text=row.text,
        url=row.url,
        source=row.source,
        updated_at=row.updated_at,
    )


def describe_error(exc: BaseException) -> str:
    """A short, safe description of a database error: the driver's message, never SQL parameters."""
    original = getattr(exc, "orig", None)
    if original is not None:
        detail = str(original.args[0]) if original.args else original.__class__.__name__
    else:  # not from the driver (a bad URL, a missing dialect): no statement, no parameters
        detail = str(exc)
    return detail.splitlines()[0][:200] if detail.strip() else exc.__class__.__name__


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
                    site=_site_key(entry.site),
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
            ids.append(_inserted_id(result))
        return ids

    def add_feedback(self, entry: FeedbackEntry) -> FeedbackRecord:
        """Record a verdict (the label must be lower_snake_case, or None when unknown)."""
        if entry.label is not None and not LABEL_PATTERN.match(entry.label):
            raise ValueError(f"label {entry.label!r} is not a lower_snake_case name")
        now = utcnow()
        values = {
            "comment_id": entry.comment_id,
            "site": _site_key(entry.site),
            "label": entry.label,
            "moderator": entry.moderator,
            "source": entry.source,
            "text": entry.text,
            "article_id": entry.article_id,
            "article_title": entry.article_title,
            "article_text": entry.article_text,
            "created_at": now,
        }
        result = self._conn.execute(feedback_table.insert().values(**values))
        return _feedback_record(_Row(id=_inserted_id(result), **values))

    def put_article(self, article: Article, merge: bool = False) -> Article:
        """Insert or replace an article; with `merge`, fields given as None keep their stored values."""
        key = {"site": _site_key(article.site), "article_id": article.article_id}
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
        return _article(_Row(**key, **values))

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


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class _Row:
    """Attribute access over a dict, to build records from the values just written."""

    def __init__(self, **values: Any):
        self.__dict__.update(values)


def default_store_url(state_dir: str | Path) -> str:
    """The SQLite URL of the store under `state_dir`."""
    return f"sqlite:///{Path(state_dir) / DB_FILE}"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite's implicit BEGIN comes too late).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        if mode is None or str(mode[0]).lower() not in ("wal", "memory"):
            raise sa.exc.OperationalError("PRAGMA journal_mode=WAL", {}, RuntimeError(f"journal mode {mode}"))
        # FULL: a commit is fsynced before it returns, so an acknowledged write survives power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # Writers take the write lock up front: a deferred transaction that reads, then writes, gets
    # SQLITE_BUSY at once (no busy_timeout wait) when another worker process writes meanwhile.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("raqib_write") else "BEGIN")


def create_store_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, synchronous=FULL and thread-safe connections."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() != "sqlite":
        return sa.create_engine(sa_url, hide_parameters=True, pool_pre_ping=True)
    database = sa_url.database
    in_memory = not database or database == ":memory:"
    if not in_memory:
        Path(database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        sa_url,
        # Never let SQL parameters (comment text) into exception messages and so into logs.
        hide_parameters=True,
        connect_args={"check_same_thread": False, "timeout": 30},
        **({"poolclass": StaticPool} if in_memory else {}),
    )
    sa.event.listen(engine, "connect", _sqlite_on_connect)
    sa.event.listen(engine, "begin", _sqlite_on_begin)
    return engine


class GroupCommit:
    """Commits the audit rows of concurrent requests together: one transaction, one fsync.

    Every scored comment is audited before its answer goes out, and with synchronous=FULL each
    commit waits for the disk (~3-4 ms measured here, against ~0.3 ms without the fsync).
    Requests that arrive while a commit is under way share the next one, so throughput under
    concurrency is not bounded by one fsync per comment.
    """

    MAX_BATCH = 1000

    def __init__(self, store: Store):
        self._store = store
        self._queue: queue.SimpleQueue[tuple[list[AuditEntry], Future[list[int]]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, entries: list[AuditEntry]) -> Future[list[int]]:
        """Queue rows; the future gets their ids, or the StoreError that kept them out."""
        future: Future[list[int]] = Future()
        with self._lock:
            if self._closed:
                future.set_exception(StoreError("the store is closed"))
                return future
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="raqib-audit-writer", daemon=True)
                self._thread.start()
            self._queue.put((entries, future))
        return future

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[tuple[list[AuditEntry], Future[list[int]]]]) -> None:
        try:
            with self._store.write() as writer:
                ids = [writer.add_audit(entries) for entries, _ in batch]
        except Exception as exc:  # every waiting request hears why, none is left hanging
            failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"cannot write: {type(exc).__name__}")
            )
            for _, future in batch:
                future.set_exception(failure)
            return
        for (_, future), row_ids in zip(batch, ids, strict=True):
            future.set_result(row_ids)


class Store:
    """Articles, audit log, feedback and webhook events over one SQLAlchemy engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # One writer at a time in this process; SQLite serialises processes itself (busy_timeout).
        self._write_lock = threading.Lock()
        self._audit = GroupCommit(self)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and create the tables if needed; StoreError when that fails."""
        try:
            engine = create_store_engine(url)
        except (OSError, SQLAlchemyError, ValueError, ImportError) as exc:  # ImportError: no DB driver
            raise StoreError(f"cannot open the store: {_os_or_db_error(exc)}") from None
        store = cls(engine)
        try:
            with store.write() as writer:
                metadata.create_all(writer._conn)
                version = writer._conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar()
                if version is None:
                    writer._conn.execute(
                        meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                elif int(version) > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store has schema version {version}; this Raqib knows {SCHEMA_VERSION}"
                    )
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
        sites = [_site_key(site), NO_SITE] if site else [NO_SITE]
        with self._read() as conn:
            rows = conn.execute(
                sa.select(articles_table).where(
                    articles_table.c.article_id == article_id, articles_table.c.site.in_(sites)
                )
            ).all()
        best = sorted(rows, key=lambda row: sites.index(row.site))
        return _article(best[0]) if best else None

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
        same_site = [row for row in rows if row.site == _site_key(site)]
        return _article((same_site or rows)[0])

    # --- audit ---------------------------------------------------------------------------------

    def submit_audit(self, entries: Sequence[AuditEntry]) -> Future[list[int]]:
        """Queue decisions for the audit log; the future resolves once they are committed (on disk)."""
        return self._audit.submit(list(entries))

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
                .where(audit_table.c.comment_id == comment_id, audit_table.c.site == _site_key(site))
                .order_by(audit_table.c.id)
            ).all()
        return [_audit_record(row) for row in rows]

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
            query = query.where(audit_table.c.site == _site_key(site))
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
        return [_audit_record(row) for row in rows]

    # --- feedback ------------------------------------------------------------------------------

    def record_feedback(self, entry: FeedbackEntry) -> FeedbackRecord:
        """Record a moderator's verdict; on disk when this returns."""
        with self.write() as writer:
            return writer.add_feedback(entry)

    def feedback_since(self, since: datetime | None = None) -> list[FeedbackRecord]:
        """Every verdict recorded at or after `since` (all when None), oldest first."""
        query = sa.select(feedback_table).order_by(feedback_table.c.id)
        if since is not None:
            query = query.where(feedback_table.c.created_at >= _aware(since))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_feedback_record(row) for row in rows]

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
            query = query.where(feedback_table.c.created_at >= _aware(since))
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
            site = _site_value(row.site)
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


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _os_or_db_error(exc: BaseException) -> str:
    # No file names: this message reaches API clients in 503s; the log line names the location.
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    if isinstance(exc, ImportError | ValueError):
        return f"{exc.__class__.__name__}: {exc}"
    return describe_error(exc)


def redacted(url: str) -> str:
    """A store URL fit for a log line: the password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable store_url>"


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
        """Try to open the store (blocking); on failure remember why and return None."""
        # `only_if_due`: requests that waited on the lock while an attempt failed do not each retry.
        with self._lock:
            if self._store is not None:
                return self._store
            if only_if_due and time.monotonic() - self._last_attempt < self.RETRY_SECONDS:
                return None
            self._last_attempt = time.monotonic()
            try:
                self._store = Store.open(self._url)
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
