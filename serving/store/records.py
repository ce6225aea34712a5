"""What the store reads and writes, as plain records, and the small conversions around them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from serving.store.tables import NO_SITE

EXPORT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
QueueOrder = Literal["risk", "time"]


def site_key(site: str | None) -> str:
    return site if site else NO_SITE


def site_value(key: str) -> str | None:
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
    # The moderator's stated reason (e.g. Coral's `IRRELEVANT_CONTENT`), kept when it maps to no label.
    reason: str | None = None


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
    reason: str | None = None


@dataclass(frozen=True)
class RemoteJob:
    """Work waiting for another server (see `jobs_table`)."""

    id: int
    kind: str
    site: str | None
    ref: str
    detail: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True)
class StoredEvent:
    """A webhook event already handled, with the answer it got."""

    source: str
    event_id: str
    body_sha256: str
    status: int
    response: Any
    created_at: datetime


def audit_record_of(row: Any) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        comment_id=row.comment_id,
        site=site_value(row.site),
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


def feedback_record_of(row: Any) -> FeedbackRecord:
    return FeedbackRecord(
        id=row.id,
        comment_id=row.comment_id,
        site=site_value(row.site),
        label=row.label,
        moderator=row.moderator,
        source=row.source,
        text=row.text,
        article_id=row.article_id,
        article_title=row.article_title,
        article_text=row.article_text,
        created_at=row.created_at,
        reason=row.reason,
    )


def article_of(row: Any) -> Article:
    return Article(
        article_id=row.article_id,
        site=site_value(row.site),
        title=row.title,
        text=row.text,
        url=row.url,
        source=row.source,
        updated_at=row.updated_at,
    )


def as_aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def remote_job_of(row: Any) -> RemoteJob:
    return RemoteJob(
        id=row.id,
        kind=row.kind,
        site=site_value(row.site),
        ref=row.ref,
        detail=row.detail,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
    )
