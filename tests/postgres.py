"""A throwaway PostgreSQL cluster for the tests: started once per session, one empty database per test.

The cluster lives in a temp dir, listens on 127.0.0.1 only (and on a unix socket inside that dir)
with trust authentication, and runs with fsync off: it holds nothing worth keeping. Without
PostgreSQL binaries the PostgreSQL-backed tests skip, except under CI (`CI` set), where a missing
server means the environment is broken and they fail instead of passing by skipping.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.conftest import free_port

SUPERUSER = "raqib"
# The server's own settings: loopback only, nothing synced, no autovacuum noise in short tests.
SERVER_SETTINGS = (
    "listen_addresses = '127.0.0.1'",
    "fsync = off",
    "synchronous_commit = off",
    "full_page_writes = off",
    "autovacuum = off",
    "max_connections = 200",
    "shared_buffers = 32MB",
)
# initdb refuses to run as root: the cluster is then owned and run by this unprivileged user.
UNPRIVILEGED_USER = "nobody"


def in_ci() -> bool:
    """True when CI says so (CI=true): there, PostgreSQL tests must run, never skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def postgres_bin_dir() -> Path | None:
    """The directory with initdb, pg_ctl and postgres: from PATH, else the newest Debian install."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        # Debian puts wrappers or symlinks on PATH; pg_ctl needs `postgres` beside the real binary.
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(Path(p) for p in debian)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI, where the PostgreSQL tests are required to run."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: the PostgreSQL-backed tests must run here)", pytrace=False)
    pytest.skip(reason)


@dataclass
class PostgresCluster:
    """A running throwaway cluster; `create_database` hands out fresh, empty databases."""

    bin_dir: Path
    root: Path
    port: int
    run_as: list[str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one database (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _pg(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # cwd: the unprivileged user may not be allowed into the checkout.
        return subprocess.run(
            [*self.run_as, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        """initdb, then pg_ctl start (waiting until it accepts connections)."""
        init = self._pg(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            # C collation: text sorts by code point, the same order SQLite uses.
            "--locale=C",
            "--no-sync",
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        # Appending keeps the file's owner (the server's user) and mode.
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n".join((*SERVER_SETTINGS, f"port = {self.port}")) + "\n")
            conf.write(f"unix_socket_directories = '{self.root}'\n")
        started = self._pg(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "start"
        )
        if started.returncode != 0:
            log = ""
            if self.log_file.exists():
                log = self.log_file.read_text(encoding="utf-8", errors="replace")
            raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}\n{started.stderr}\n{log}")

    def stop(self) -> None:
        """Stop at once (nothing here needs a clean shutdown)."""
        self._pg(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "stop", "-m", "immediate", "-w")

    def _admin(self, statement: str) -> None:
        import psycopg

        # CREATE/DROP DATABASE cannot run inside a transaction.
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(statement)  # type: ignore[arg-type]  # names are ours, never user input

    def create_database(self) -> tuple[str, str]:
        """A new empty database: (its name, its SQLAlchemy URL)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop it, ending any session a test left open (a killed server's, say)."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _unprivileged(root: Path) -> list[str]:
    """The command prefix that runs PostgreSQL's programs as a non-root user (empty when not root)."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam(UNPRIVILEGED_USER)
    os.chown(root, user.pw_uid, user.pw_gid)
    if shutil.which("runuser"):
        return ["runuser", "-u", UNPRIVILEGED_USER, "--"]
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this session's own; skipped (failed under CI) without PostgreSQL."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        unavailable("no PostgreSQL server (initdb, pg_ctl, postgres) on PATH or under /usr/lib/postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg (the 'postgres' extra) is not installed")
    root = Path(tempfile.mkdtemp(prefix="raqib-pg-"))
    cluster = PostgresCluster(bin_dir=bin_dir, root=root, port=free_port(), run_as=_unprivileged(root))
    try:
        cluster.start()
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty database on the session's cluster; dropped afterwards."""
    name, url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL on each backend: a SQLite file under tmp_path, and a new PostgreSQL database."""
    if request.param == "sqlite":
        from serving.store.engine import default_store_url

        return default_store_url(tmp_path / "state")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """A store opened on `store_url` (so on each backend), closed after the test."""
    from serving.store.store import Store

    opened = Store.open(store_url)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Any]:
    """SQLite only: the default store file under tmp_path/state, for tests of SQLite's own behaviour."""
    from serving.store.engine import default_store_url
    from serving.store.store import Store

    opened = Store.open(default_store_url(tmp_path / "state"))
    yield opened
    opened.close()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker of the PostgreSQL-backed tests (`-m postgres` runs just them)."""
    config.addinivalue_line("markers", "postgres: runs against the session's throwaway PostgreSQL cluster")
