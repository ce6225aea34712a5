"""The schema of the release before migrations: every table as `metadata.create_all` made it.

Spelled out here rather than taken from serving/store/tables.py, so that editing tables.py later never
changes what this revision creates. A store made before migrations is stamped at this revision by
`raqib db upgrade` (its tables are these), then upgraded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "raqib_meta",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    # What the release before migrations wrote; it refuses to open stores with a higher value.
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])

    op.create_table(
        "articles",
        sa.Column("site", sa.Text(), primary_key=True),
        sa.Column("article_id", sa.Text(), primary_key=True),
        sa.Column("title", sa.Text()),
        sa.Column("text", sa.Text()),
        sa.Column("url", sa.Text()),
        sa.Column("url_key", sa.Text()),
        sa.Column("source", sa.Text()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_articles_url_key", "articles", ["url_key"])

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("comment_id", sa.Text()),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("article_id", sa.Text()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Text()),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("decided_action", sa.Text(), nullable=False),
        sa.Column("decided_label", sa.Text()),
        sa.Column("scores", sa.Text(), nullable=False),
        sa.Column("risk", sa.Float(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_audit_comment", "audit", ["site", "comment_id"])
    op.create_index("ix_audit_created", "audit", ["created_at"])
    op.create_index("ix_audit_risk", "audit", ["risk"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("comment_id", sa.Text(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("label", sa.Text()),
        sa.Column("moderator", sa.Text()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("text", sa.Text()),
        sa.Column("article_id", sa.Text()),
        sa.Column("article_title", sa.Text()),
        sa.Column("article_text", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_feedback_comment", "feedback", ["site", "comment_id"])
    op.create_index("ix_feedback_created", "feedback", ["created_at"])

    op.create_table(
        "webhook_events",
        sa.Column("source", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Text(), primary_key=True),
        sa.Column("body_sha256", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )

    op.create_table(
        "queue_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("feedback_id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.Text(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("moderator", sa.Text(), nullable=False),
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("undone_at", sa.DateTime()),
    )
    op.create_index("ix_queue_decisions_comment", "queue_decisions", ["site", "comment_id"])

    op.create_table(
        "shadow_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("comment_id", sa.Text()),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("champion_name", sa.Text(), nullable=False),
        sa.Column("champion_version", sa.Text(), nullable=False),
        sa.Column("champion_label", sa.Text(), nullable=False),
        sa.Column("champion_action", sa.Text(), nullable=False),
        sa.Column("shadow_name", sa.Text(), nullable=False),
        sa.Column("shadow_version", sa.Text(), nullable=False),
        sa.Column("shadow_label", sa.Text(), nullable=False),
        sa.Column("shadow_action", sa.Text(), nullable=False),
        sa.Column("shadow_scores", sa.Text(), nullable=False),
        sa.Column("agree", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_shadow_pair", "shadow_audit", ["shadow_version", "champion_version", "agree"])
    op.create_index("ix_shadow_comment", "shadow_audit", ["site", "comment_id"])

    op.create_table(
        "remote_jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("kind", "site", "ref", name="uq_remote_jobs_ref"),
    )
    op.create_index("ix_remote_jobs_due", "remote_jobs", ["next_attempt_at"])


def downgrade() -> None:
    for table in (
        "remote_jobs",
        "shadow_audit",
        "queue_decisions",
        "webhook_events",
        "feedback",
        "audit",
        "articles",
        "raqib_meta",
    ):
        op.drop_table(table)  # their indexes go with them
