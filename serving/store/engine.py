"""Opening the database: the engine, SQLite's durability settings, safe descriptions of a URL or an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from serving.store.errors import describe_error

DB_FILE = "raqib.db"


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


def os_or_db_error(exc: BaseException) -> str:
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
