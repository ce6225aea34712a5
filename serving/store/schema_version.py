"""Which revision of the schema a store is at, read with SQLAlchemy alone.

The migrations themselves (serving/store/migrations/, run by `raqib db upgrade`) need Alembic; the
server must not pay for importing it on every start, so it only reads the `alembic_version` row that
Alembic keeps and compares it with the revision this code was written for.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from serving.store.errors import StoreError
from serving.store.tables import SCHEMA_VERSION, meta_table, metadata

BASELINE_REVISION = "0001_baseline"
# Every revision in serving/store/migrations/versions/, oldest first (a test checks it against Alembic).
REVISIONS = (BASELINE_REVISION, "0002_feedback_reason")
HEAD_REVISION = REVISIONS[-1]
# A store made by the release before migrations: its tables equal the baseline, no alembic_version.
PRE_MIGRATION = "pre-migration v1"
UPGRADE_HINT = "run `raqib db upgrade` (with the same --store-url / state dir)"

# Alembic's own bookkeeping table, spelled as Alembic creates it; kept out of `metadata` because the
# schema it describes is everything else.
version_table = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


class SchemaOutdated(StoreError):
    """The store was made by an older Raqib: `raqib db upgrade` must migrate it before it is used."""


def schema_revision(conn: Connection) -> str | None:
    """The store's revision: None when none of its tables exist, PRE_MIGRATION, or Alembic's revision."""
    tables = set(sa.inspect(conn).get_table_names())
    if version_table.name in tables:
        versions = sorted(conn.execute(sa.select(version_table.c.version_num)).scalars())
        if versions:
            # More than one row would be branches this code never made: reported as unknown.
            return "+".join(versions)
        # Empty (Alembic downgraded to nothing): what the other tables say decides.
    if not tables & set(metadata.tables):
        return None  # another application's tables may share a PostgreSQL schema; ours are absent
    version = None
    if meta_table.name in tables:
        version = conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar()
    # That release wrote the row in the transaction that made the tables; a store without it is odd but v1.
    return f"pre-migration v{version if version is not None else 1}"


def check_revision(revision: str | None) -> None:
    """Raise unless a store at `revision` is one this code can use as it is."""
    if revision == HEAD_REVISION:
        return
    if revision == PRE_MIGRATION or revision in REVISIONS:
        raise SchemaOutdated(
            f"the store's schema is at {revision}, this Raqib needs {HEAD_REVISION}: {UPGRADE_HINT}"
        )
    raise StoreError(
        f"the store's schema is at {revision}, which this Raqib does not know (it knows up to "
        f"{HEAD_REVISION}): the code is older than the database; run a Raqib at least as new as the "
        "one that migrated it"
    )


def create_at_head(conn: Connection) -> None:
    """Make every table in an empty database and mark it as being at HEAD_REVISION."""
    # The same result as running every migration from nothing, without importing Alembic: hundreds of
    # tests and every fresh deployment open empty stores. test_migrations checks the two agree.
    metadata.create_all(conn)
    version_table.create(conn, checkfirst=True)
    conn.execute(version_table.insert().values(version_num=HEAD_REVISION))
    # Kept for the release before migrations: it refuses stores whose schema_version is above its own.
    conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
