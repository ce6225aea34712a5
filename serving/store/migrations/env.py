"""Alembic's environment for the store; Alembic runs it (via serving.store.migrate), nothing imports it.

The connection comes from `config.attributes["connection"]`, so the migrations run inside the caller's
transaction (stamp and upgrade commit together); without one, `sqlalchemy.url` is opened, for a
developer driving Alembic's commands by hand with `serving.store.migrate.alembic_config(url)`.
"""

from __future__ import annotations

from alembic import context

from serving.store.engine import create_store_engine
from serving.store.tables import metadata


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_store_engine(config.get_main_option("sqlalchemy.url") or "")
        try:
            with engine.connect() as own:
                config.attributes["connection"] = own
                run()
        finally:
            config.attributes.pop("connection", None)
            engine.dispose()
        return
    context.configure(
        connection=connection,
        # For autogenerate: `metadata` is what the newest revision must produce.
        target_metadata=metadata,
        # SQLite alters little in place; batch operations copy the table when they must.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
