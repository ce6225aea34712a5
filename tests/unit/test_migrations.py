"""The store's schema history: stores made before migrations, empty ones, and the head matching tables.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serving.api.app import create_app
from serving.settings import Settings
from serving.store.engine import create_store_engine, default_store_url
from serving.store.errors import StoreError
from serving.store.migrate import BASELINE_TABLES, alembic_config, script_directory, upgrade
from serving.store.records import FeedbackEntry
from serving.store.schema_version import (
    BASELINE_REVISION,
    HEAD_REVISION,
    PRE_MIGRATION,
    REVISIONS,
    SchemaOutdated,
    version_table,
)
from serving.store.store import Store, StoreHolder
from serving.store.tables import metadata
from training.cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()
WHEN = datetime(2026, 3, 1, 12, 30)  # naive UTC, as the release before migrations stored times

# The tables exactly as the release before migrations defined them (its tables.py, frozen here; the
# UTC type decorator stored plain DATETIME). That release made them with `create_all` on first open.
old_metadata = sa.MetaData()
_text, _int = sa.Text, sa.Integer
OLD_TABLES = {
    "raqib_meta": sa.Table(
        "raqib_meta",
        old_metadata,
        sa.Column("key", _text, primary_key=True),
        sa.Column("value", _text, nullable=False),
    ),
    "articles": sa.Table(
        "articles",
        old_metadata,
        sa.Column("site", _text, primary_key=True),
        sa.Column("article_id", _text, primary_key=True),
        *(sa.Column(name, _text) for name in ("title", "text", "url", "url_key", "source")),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Index("ix_articles_url_key", "url_key"),
    ),
    "audit": sa.Table(
        "audit",
        old_metadata,
        sa.Column("id", _int, primary_key=True, autoincrement=True),
        sa.Column("comment_id", _text),
        sa.Column("site", _text, nullable=False),
        sa.Column("article_id", _text),
        sa.Column("text", _text, nullable=False),
        sa.Column("author_id", _text),
        sa.Column("label", _text, nullable=False),
        sa.Column("action", _text, nullable=False),
        sa.Column("decided_action", _text, nullable=False),
        sa.Column("decided_label", _text),
        sa.Column("scores", _text, nullable=False),
        sa.Column("risk", sa.Float, nullable=False),
        sa.Column("model_name", _text, nullable=False),
        sa.Column("model_version", _text, nullable=False),
        sa.Column("source", _text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_audit_comment", "site", "comment_id"),
        sa.Index("ix_audit_created", "created_at"),
        sa.Index("ix_audit_risk", "risk"),
    ),
    "feedback": sa.Table(
        "feedback",
        old_metadata,
        sa.Column("id", _int, primary_key=True, autoincrement=True),
        sa.Column("comment_id", _text, nullable=False),
        sa.Column("site", _text, nullable=False),
        sa.Column("label", _text),
        sa.Column("moderator", _text),
        sa.Column("source", _text, nullable=False),
        *(sa.Column(name, _text) for name in ("text", "article_id", "article_title", "article_text")),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_feedback_comment", "site", "comment_id"),
        sa.Index("ix_feedback_created", "created_at"),
    ),
    "webhook_events": sa.Table(
        "webhook_events",
        old_metadata,
        sa.Column("source", _text, primary_key=True),
        sa.Column("event_id", _text, primary_key=True),
        sa.Column("body_sha256", _text, nullable=False),
        sa.Column("status", _int, nullable=False),
        sa.Column("response", _text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    ),
    "queue_decisions": sa.Table(
        "queue_decisions",
        old_metadata,
        sa.Column("id", _int, primary_key=True, autoincrement=True),
        sa.Column("feedback_id", _int, nullable=False),
        sa.Column("audit_id", _int, nullable=False),
        *(
            sa.Column(name, _text, nullable=False)
            for name in (
                "comment_id",
                "site",
                "decision",
                "label",
                "moderator",
                "model_name",
                "model_version",
            )
        ),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("undone_at", sa.DateTime),
        sa.Index("ix_queue_decisions_comment", "site", "comment_id"),
    ),
    "shadow_audit": sa.Table(
        "shadow_audit",
        old_metadata,
        sa.Column("id", _int, primary_key=True, autoincrement=True),
        sa.Column("comment_id", _text),
        *(
            sa.Column(name, _text, nullable=False)
            for name in (
                "site",
                "source",
                "champion_name",
                "champion_version",
                "champion_label",
                "champion_action",
                "shadow_name",
                "shadow_version",
                "shadow_label",
                "shadow_action",
                "shadow_scores",
            )
        ),
        sa.Column("agree", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Index("ix_shadow_pair", "shadow_version", "champion_version", "agree"),
        sa.Index("ix_shadow_comment", "site", "comment_id"),
    ),
    "remote_jobs": sa.Table(
        "remote_jobs",
        old_metadata,
        sa.Column("id", _int, primary_key=True, autoincrement=True),
        sa.Column("kind", _text, nullable=False),
        sa.Column("site", _text, nullable=False),
        sa.Column("ref", _text, nullable=False),
        sa.Column("detail", _text),
        sa.Column("attempts", _int, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_error", _text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("kind", "site", "ref", name="uq_remote_jobs_ref"),
        sa.Index("ix_remote_jobs_due", "next_attempt_at"),
    ),
}

# A few rows in every table, as that release wrote them.
OLD_ROWS: dict[str, list[dict[str, Any]]] = {
    "raqib_meta": [{"key": "schema_version", "value": "1"}],
    "articles": [
        {
            "site": "aljazeera",
            "article_id": "a1",
            "title": "عنوان المقال",
            "text": "نص المقال",
            "url": "https://www.example.com/a1",
            "url_key": "example.com/a1",
            "source": "api",
            "updated_at": WHEN,
        },
        {"site": "", "article_id": "a2", "updated_at": WHEN},
    ],
    "audit": [
        {
            "comment_id": f"c{n}",
            "site": "aljazeera",
            "article_id": "a1",
            "text": f"تعليق رقم {n}",
            "author_id": "u1",
            "label": "acceptable",
            "action": "approve",
            "decided_action": "approve",
            "decided_label": None,
            "scores": '{"acceptable": 0.9, "insult": 0.1}',
            "risk": 0.1,
            "model_name": "starter",
            "model_version": "v3",
            "source": "api",
            "created_at": WHEN,
        }
        for n in range(3)
    ],
    "feedback": [
        {
            "comment_id": "c0",
            "site": "aljazeera",
            "label": "insult",
            "moderator": "mona",
            "source": "queue",
            "text": "تعليق رقم 0",
            "article_id": "a1",
            "created_at": WHEN,
        },
        {"comment_id": "c1", "site": "aljazeera", "label": None, "source": "coral", "created_at": WHEN},
    ],
    "webhook_events": [
        {
            "source": "coral",
            "event_id": "e1",
            "body_sha256": "ab" * 32,
            "status": 200,
            "response": '{"ok": true}',
            "created_at": WHEN,
        }
    ],
    "queue_decisions": [
        {
            "feedback_id": 1,
            "audit_id": 1,
            "comment_id": "c0",
            "site": "aljazeera",
            "decision": "reject",
            "label": "insult",
            "moderator": "mona",
            "model_name": "starter",
            "model_version": "v3",
            "created_at": WHEN,
            "undone_at": None,
        }
    ],
    "shadow_audit": [
        {
            "comment_id": "c2",
            "site": "aljazeera",
            "source": "api",
            "champion_name": "starter",
            "champion_version": "v3",
            "champion_label": "acceptable",
            "champion_action": "approve",
            "shadow_name": "starter",
            "shadow_version": "v4",
            "shadow_label": "insult",
            "shadow_action": "review",
            "shadow_scores": '{"insult": 0.7}',
            "agree": False,
            "created_at": WHEN,
        }
    ],
    "remote_jobs": [
        {
            "kind": "story",
            "site": "aljazeera",
            "ref": "s1",
            "detail": None,
            "attempts": 2,
            "next_attempt_at": WHEN,
            "last_error": "timeout",
            "created_at": WHEN,
        }
    ],
}


def make_pre_migration_store(url: str) -> None:
    """A store as the release before migrations left it: its tables, its schema_version row, data."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            old_metadata.create_all(conn)
            for name, rows in OLD_ROWS.items():
                for row in rows:  # one by one: the rows of a table do not all name the same columns
                    conn.execute(OLD_TABLES[name].insert().values(**row))
    finally:
        engine.dispose()


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's RAQIB_STORE_URL would otherwise replace --state-dir in the CLI calls below.
    monkeypatch.delenv("RAQIB_STORE_URL", raising=False)
    monkeypatch.delenv("RAQIB_STATE_DIR", raising=False)


def table_shape(url: str) -> dict[str, Any]:
    """Columns (name, type, nullable, primary key), indexes and unique constraints, as reflected."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            shape: dict[str, Any] = {}
            for table in sorted(set(inspector.get_table_names()) - {version_table.name}):
                shape[table] = {
                    "columns": [
                        (c["name"], c["type"].compile(dialect=conn.dialect), c["nullable"])
                        for c in inspector.get_columns(table)
                    ],
                    "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in inspector.get_indexes(table)
                        if not i.get("duplicates_constraint")  # PostgreSQL lists unique constraints twice
                    ),
                    "unique": sorted(
                        (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
                    ),
                }
            return shape
    finally:
        engine.dispose()


def migration_differences(url: str) -> list[Any]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
            )
    finally:
        engine.dispose()


def revision_of(url: str) -> list[str]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(version_table.c.version_num)).scalars())
    finally:
        engine.dispose()


def test_head_revision_is_the_script_directorys_head_and_the_history_is_linear() -> None:
    scripts = script_directory()
    assert scripts.get_heads() == [HEAD_REVISION]
    oldest_first = [script.revision for script in reversed(list(scripts.walk_revisions()))]
    assert tuple(oldest_first) == REVISIONS
    assert REVISIONS[0] == BASELINE_REVISION


def test_a_store_made_before_migrations_is_refused_then_upgraded_with_its_rows_intact(store_url: str) -> None:
    make_pre_migration_store(store_url)
    with pytest.raises(SchemaOutdated) as refused:
        Store.open(store_url)
    message = str(refused.value)
    assert PRE_MIGRATION in message and HEAD_REVISION in message and "raqib db upgrade" in message

    current = cli("db", "current", "--store-url", store_url)
    assert current.exit_code == 0 and PRE_MIGRATION in current.output and "raqib db upgrade" in current.output
    result = cli("db", "upgrade", "--store-url", store_url)
    assert result.exit_code == 0, result.output
    assert f"{PRE_MIGRATION} → {HEAD_REVISION}" in result.output and BASELINE_REVISION in result.output
    assert revision_of(store_url) == [HEAD_REVISION]

    store = Store.open(store_url)
    try:
        with store.engine.connect() as conn:
            for name, rows in OLD_ROWS.items():
                assert conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar() == len(
                    rows
                ), name
            assert conn.execute(sa.text("SELECT shadow_version, agree FROM shadow_audit")).one() == (
                "v4",
                False,
            )
            assert conn.execute(sa.text("SELECT decision, label FROM queue_decisions")).one() == (
                "reject",
                "insult",
            )
            assert conn.execute(sa.text("SELECT value FROM raqib_meta")).scalar() == "1"
        aware = WHEN.replace(tzinfo=UTC)
        article = store.get_article("a1", "aljazeera")
        assert article is not None and article.title == "عنوان المقال" and article.updated_at == aware
        assert [a.text for a in store.audit_for("c1", "aljazeera")] == ["تعليق رقم 1"]
        old_feedback = store.feedback_since()
        assert [(f.comment_id, f.label, f.reason) for f in old_feedback] == [
            ("c0", "insult", None),
            ("c1", None, None),
        ]
        event = store.get_event("coral", "e1")
        assert event is not None and event.status == 200 and event.response == {"ok": True}
        [job] = store.waiting_jobs()
        assert (job.ref, job.attempts, job.last_error, job.next_attempt_at) == ("s1", 2, "timeout", aware)

        new = store.record_feedback(
            FeedbackEntry(
                comment_id="c2", label=None, source="coral", site="aljazeera", reason="IRRELEVANT_CONTENT"
            )
        )
        assert new.reason == "IRRELEVANT_CONTENT"
        assert store.feedback_since()[-1].reason == "IRRELEVANT_CONTENT"
        # Verdicts without a label are still not exported, reason or not.
        assert [r["comment_id"] for r in store.export_labels()] == ["c0"]
    finally:
        store.close()
    assert migration_differences(store_url) == []
    again = cli("db", "upgrade", "--store-url", store_url)
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_the_baseline_revision_makes_the_tables_of_the_release_before_migrations(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # What makes stamping a pre-migration store at 0001_baseline honest.
    from alembic import command

    make_pre_migration_store(store_url)
    before = table_shape(store_url)
    assert set(before) == set(BASELINE_TABLES)
    if store_url.startswith("sqlite"):
        baseline_url, cleanup = default_store_url(tmp_path / "baseline"), None
    else:  # a second fresh database on the same cluster: reflected types are per dialect
        cluster = request.getfixturevalue("postgres")
        name, baseline_url = cluster.create_database()
        cleanup = lambda: cluster.drop_database(name)  # noqa: E731
    try:
        engine = create_store_engine(baseline_url)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(connection=conn), BASELINE_REVISION)
        finally:
            engine.dispose()
        assert table_shape(baseline_url) == before
    finally:
        if cleanup is not None:
            cleanup()


def test_an_empty_store_is_created_at_head_and_upgrading_it_does_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert cli("db", "current", "--state-dir", str(state)).exit_code == 1  # no store there yet
    Store.open(default_store_url(state)).close()
    assert revision_of(default_store_url(state)) == [HEAD_REVISION]
    current = cli("db", "current", "--state-dir", str(state))
    assert current.exit_code == 0 and HEAD_REVISION in current.output and "up to date" in current.output
    result = cli("db", "upgrade", "--state-dir", str(state))
    assert result.exit_code == 0 and f"already at {HEAD_REVISION}, nothing to do" in result.output
    # Opening again leaves it as it is.
    Store.open(default_store_url(state)).close()
    assert revision_of(default_store_url(state)) == [HEAD_REVISION]


def test_the_migrated_schema_is_tables_py_and_what_store_open_creates(store_url: str, tmp_path: Path) -> None:
    # The test that fails when tables.py changes without a migration.
    done = upgrade(store_url)
    assert (done.before, done.after, done.stamped_baseline) == (None, HEAD_REVISION, False)
    assert migration_differences(store_url) == []
    if store_url.startswith("sqlite"):
        created = default_store_url(tmp_path / "created")
        Store.open(created).close()
        assert migration_differences(created) == []
        assert table_shape(created) == table_shape(store_url)
    store = Store.open(store_url)
    store.close()


def test_a_store_from_a_newer_raqib_is_refused(store_url: str) -> None:
    Store.open(store_url).close()
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(version_table.update().values(version_num="0099_from_the_future"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="older than the database") as refused:
        Store.open(store_url)
    assert not isinstance(refused.value, SchemaOutdated)
    result = cli("db", "upgrade", "--store-url", store_url)
    assert result.exit_code == 1 and "0099_from_the_future" in result.output
    assert revision_of(store_url) == ["0099_from_the_future"]


def test_the_server_refuses_to_start_on_an_outdated_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in sys.modules["os"].environ if name.startswith("RAQIB_")]:
        monkeypatch.delenv(name)
    state = tmp_path / "state"
    make_pre_migration_store(default_store_url(state))
    client = TestClient(create_app(Settings(state_dir=state, model_dir=tmp_path / "no-model")))
    with pytest.raises(SchemaOutdated, match="raqib db upgrade"), client:
        pass


def test_a_retry_that_finds_an_outdated_store_leaves_it_unavailable(tmp_path: Path) -> None:
    # The store was down when the server started; when it comes back outdated, requests get 503s.
    url = default_store_url(tmp_path / "state")
    make_pre_migration_store(url)
    holder = StoreHolder(url)
    with pytest.raises(SchemaOutdated):
        holder.open()
    holder._last_attempt = -float("inf")
    assert holder.open(only_if_due=True) is None
    assert "raqib db upgrade" in (holder.error or "")


def test_opening_a_store_does_not_import_alembic(tmp_path: Path) -> None:
    check = (
        "import sys\n"
        "import serving.api.app\n"
        "from serving.store.engine import default_store_url\n"
        "from serving.store.store import Store\n"
        f"Store.open(default_store_url({str(tmp_path / 'state')!r})).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_revision_downgrades_and_an_emptied_store_is_created_again(store_url: str) -> None:
    from alembic import command

    upgrade(store_url)
    engine = create_store_engine(store_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), "base")
        with engine.connect() as conn:
            # Alembic keeps its (now empty) table; nothing of ours is left.
            assert set(sa.inspect(conn).get_table_names()) == {version_table.name}
    finally:
        engine.dispose()
    Store.open(store_url).close()
    assert revision_of(store_url) == [HEAD_REVISION]
    assert migration_differences(store_url) == []
