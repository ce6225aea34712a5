"""feedback.reason: the moderator's stated reason, e.g. Coral's rejection code `IRRELEVANT_CONTENT`.

Recorded for verdicts whose reason maps to no label; NULL for every verdict recorded before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_feedback_reason"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: an ALTER TABLE ADD COLUMN on SQLite too, no copy of the table.
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("reason")
