"""Migrating a store with Alembic, for `raqib db …` and the tests.

The server never imports this module: Alembic costs start-up time, and `Store.open` only needs to read
the revision (serving/store/schema_version.py). The Alembic configuration is built here in code, so no
alembic.ini has to be shipped or found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from serving.store.engine import create_store_engine, os_or_db_error
from serving.store.errors import StoreError
from serving.store.schema_version import (
    BASELINE_REVISION,
    HEAD_REVISION,
    PRE_MIGRATION,
    SchemaOutdated,
    check_revision,
    schema_revision,
)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# What the release before migrations made, i.e. what revision 0001_baseline creates.
BASELINE_TABLES = (
    "raqib_meta",
    "articles",
    "audit",
    "feedback",
    "webhook_events",
    "queue_decisions",
    "shadow_audit",
    "remote_jobs",
)


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """Alembic's configuration for the store's migrations, on `connection` (or a URL to connect to)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser would read `%` in a URL-encoded password as interpolation.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_directory() -> ScriptDirectory:
    """The migration scripts as Alembic sees them."""
    return ScriptDirectory.from_config(alembic_config())


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did: the revision before (None: an empty database) and after."""

    before: str | None
    after: str | None
    stamped_baseline: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


def current_revision(url: str) -> str | None:
    """The store's revision: None for an empty database, PRE_MIGRATION, or an Alembic revision."""
    try:
        engine = create_store_engine(url)
    except (OSError, SQLAlchemyError, ValueError, ImportError) as exc:
        raise StoreError(f"cannot open the store: {os_or_db_error(exc)}") from None
    try:
        with engine.connect() as conn:
            return schema_revision(conn)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the store: {os_or_db_error(exc)}") from None
    finally:
        engine.dispose()


def upgrade(url: str) -> Upgrade:
    """Migrate the store at `url` to HEAD_REVISION in one transaction; a no-op when it is there."""
    try:
        engine = create_store_engine(url)
    except (OSError, SQLAlchemyError, ValueError, ImportError) as exc:
        raise StoreError(f"cannot open the store: {os_or_db_error(exc)}") from None
    try:
        with engine.connect() as conn:
            conn.execution_options(raqib_write=True)  # SQLite: take the write lock at BEGIN
            with conn.begin():
                # Alembic joins this transaction: the stamp and every revision commit together, or
                # nothing changes.
                before = schema_revision(conn)
                if before == HEAD_REVISION:
                    return Upgrade(before, before)
                if before is not None:
                    try:
                        check_revision(before)  # a revision newer than this code: StoreError
                    except SchemaOutdated:
                        pass
                config = alembic_config(connection=conn)
                stamped = before == PRE_MIGRATION
                if stamped:
                    _check_pre_migration_tables(conn)
                    command.stamp(config, BASELINE_REVISION)
                command.upgrade(config, "head")
                return Upgrade(before, schema_revision(conn), stamped)
    except SQLAlchemyError as exc:
        raise StoreError(f"the migration failed, nothing was changed: {os_or_db_error(exc)}") from None
    finally:
        engine.dispose()


def _check_pre_migration_tables(conn: Connection) -> None:
    # Stamping says "these tables are the baseline's": make sure they are there before saying it.
    missing = sorted(set(BASELINE_TABLES) - set(sa.inspect(conn).get_table_names()))
    if missing:
        raise StoreError(
            f"the store has some of Raqib's tables but not {', '.join(missing)}; it is not a store the "
            "release before migrations made, so it is left as it is"
        )
