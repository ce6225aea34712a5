"""The audit log's write path: one INSERT per group commit, rows read back as written, coroutines answered."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from serving.store.errors import StoreError
from serving.store.records import AuditEntry
from serving.store.store import Store
from serving.store.writer import _AUDIT_INSERT, _SQLITE_ROWS_PER_INSERT, StoreWriter

pytestmark = pytest.mark.unit

SECRET_TEXT = "تعليق لا يظهر في أي رسالة خطأ"


def entry(comment_id: str, text: str = "اتصل واتساب 0551234567", site: str | None = "news") -> AuditEntry:
    return AuditEntry(
        comment_id=comment_id,
        site=site,
        article_id="a-1",
        text=text,
        author_id="u-1",
        label="spam",
        action="reject",
        decided_action="reject",
        decided_label="spam",
        scores={"on_topic": 0.1, "spam": 0.85, "abusive": 0.05},
        model_name="raqib-moderator",
        model_version="7",
        source="score",
    )


def test_audit_rows_read_back_as_they_were_written(store: Store) -> None:
    written = [entry("c-1"), entry("c-2", site=None), entry("c-1", text="ثانية")]
    ids = store.record_audit(written)
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    first, again = store.audit_for("c-1", "news")
    (other,) = store.audit_for("c-2", None)
    assert [first.id, other.id, again.id] == ids
    assert (first.text, again.text) == (written[0].text, "ثانية")
    assert first.scores == written[0].scores and first.risk == pytest.approx(0.85)
    assert (first.label, first.action, first.decided_action, first.decided_label) == (
        "spam",
        "reject",
        "reject",
        "spam",
    )
    assert first.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - first.created_at).total_seconds()) < 60


def test_each_id_belongs_to_its_row_past_one_insert(store: Store) -> None:
    count = 2 * _SQLITE_ROWS_PER_INSERT + 3  # three INSERTs on SQLite
    ids = store.record_audit([entry(f"c-{n}") for n in range(count)])
    assert len(ids) == count
    with store.engine.connect() as conn:
        by_id = dict(conn.execute(sa.text("SELECT id, comment_id FROM audit")).all())
    assert [by_id[row_id] for row_id in ids] == [f"c-{n}" for n in range(count)]


def test_the_sqlite_insert_stores_what_sqlalchemy_would(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC)
    monkeypatch.setattr("serving.store.writer.utcnow", lambda: moment)
    sqlite_store.record_audit([entry("c-driver")])
    written = entry("c-core")
    with sqlite_store.write() as writer:
        writer._conn.execute(
            _AUDIT_INSERT,
            {
                **{name: getattr(written, name) for name in ("comment_id", "site", "article_id", "text")},
                **{name: getattr(written, name) for name in ("author_id", "label", "action")},
                **{name: getattr(written, name) for name in ("decided_action", "decided_label", "source")},
                "scores": json.dumps(dict(written.scores), sort_keys=True),
                "risk": 0.85,
                "model_name": written.model_name,
                "model_version": written.model_version,
                "created_at": moment,
            },
        )
    with sqlite_store.engine.connect() as conn:
        # The stored values, created_at's text included, are the same whichever way they went in.
        driver, core = conn.exec_driver_sql("SELECT * FROM audit ORDER BY id").all()
    assert driver.comment_id == "c-driver" and core.comment_id == "c-core"
    assert tuple(driver)[2:] == tuple(core)[2:]
    assert sqlite_store.audit_for("c-driver", "news")[0].created_at == moment


def test_a_refused_write_is_a_store_error_without_the_comment(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    sa.event.listen(sqlite_store.engine, "connect", read_only)
    sqlite_store.engine.dispose()
    try:
        with pytest.raises(StoreError) as caught:
            sqlite_store.record_audit([entry("c-1", text=SECRET_TEXT)])
    finally:
        sa.event.remove(sqlite_store.engine, "connect", read_only)
        sqlite_store.engine.dispose()
    assert "readonly" in str(caught.value) and SECRET_TEXT not in str(caught.value)
    assert sqlite_store.audit_for("c-1", "news") == []
    assert sqlite_store.record_audit([entry("c-2")]) == [1]


def test_coroutines_get_their_own_ids_from_shared_commits(store: Store) -> None:
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    sa.event.listen(store.engine, "commit", count)

    async def submit_all() -> list[list[int]]:
        # Queued while another write holds the store: they share the commits that follow.
        with store._write_lock:
            futures = [store.submit_audit_from_loop([entry(f"c-{n}")]) for n in range(30)]
        return list(await asyncio.gather(*futures))

    ids = asyncio.run(submit_all())
    assert sorted(i for row_ids in ids for i in row_ids) == list(range(1, 31))
    assert commits <= 2
    for n, row_ids in enumerate(ids):
        (record,) = store.audit_for(f"c-{n}", "news")
        assert row_ids == [record.id]


def test_a_coroutine_that_stops_waiting_does_not_stop_the_others(store: Store) -> None:
    async def submit() -> list[int]:
        with store._write_lock:
            gone = store.submit_audit_from_loop([entry("c-gone")])
            kept = store.submit_audit_from_loop([entry("c-kept")])
            gone.cancel()
        return await kept

    assert len(asyncio.run(submit())) == 1
    # The row of the request that went away is still recorded: it was scored and answered for.
    assert [len(store.audit_for(c, "news")) for c in ("c-gone", "c-kept")] == [1, 1]


def test_a_failed_commit_reaches_waiting_coroutines(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self: StoreWriter, *args: object, **kwargs: object) -> list[int]:
        raise OperationalError(
            "INSERT INTO audit ...", {}, sqlite3.OperationalError("database or disk is full")
        )

    monkeypatch.setattr(StoreWriter, "add_audit", disk_full)

    async def submit() -> list[BaseException | list[int]]:
        futures = [store.submit_audit_from_loop([entry(f"c-{n}")]) for n in range(3)]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    outcomes = asyncio.run(submit())
    assert all(isinstance(o, StoreError) and "disk is full" in str(o) for o in outcomes)


def test_a_closed_store_refuses_coroutines_at_once(store_url: str) -> None:
    closed = Store.open(store_url)
    closed.close()

    async def submit() -> list[int]:
        return await closed.submit_audit_from_loop([entry("late")])

    with pytest.raises(StoreError, match="closed"):
        asyncio.run(submit())
