"""Every table Raqib keeps, in one SQLAlchemy MetaData; a change here needs a migration (see migrations/)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

# The release before migrations checked this `raqib_meta` row; Alembic's revision (see
# serving/store/schema_version.py) versions the schema now. Raise it only in a migration that the
# release before migrations must refuse (it refuses stores above its own version).
SCHEMA_VERSION = 1
NO_SITE = ""  # sites are part of keys; NULL never equals NULL in SQL, so "no site" is stored as ''


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
    # The moderator's stated reason (e.g. Coral's `IRRELEVANT_CONTENT`), kept when it maps to no label.
    sa.Column("reason", sa.Text),
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

# The moderators' queue: each decision logged with the model version it answered.
decisions_table = sa.Table(
    "queue_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feedback_id", sa.Integer, nullable=False),
    sa.Column("audit_id", sa.Integer, nullable=False),
    sa.Column("comment_id", sa.Text, nullable=False),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("moderator", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("undone_at", UTCDateTime),
    sa.Index("ix_queue_decisions_comment", "site", "comment_id"),
)

# Shadow mode: the challenger's verdict beside the champion's, per comment.
shadow_table = sa.Table(
    "shadow_audit",
    metadata,
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

# Work that needs another server (Coral's GraphQL API): kept until it succeeds, so an event that
# arrived while Coral was unreachable is retried later, never lost. One row per (kind, site, ref):
# a second event about the same story or comment while the first waits adds nothing.
jobs_table = sa.Table(
    "remote_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("ref", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("kind", "site", "ref", name="uq_remote_jobs_ref"),
    sa.Index("ix_remote_jobs_due", "next_attempt_at"),
)
