"""Drills with a store that refuses writes (read-only or full): scoring goes on, writes get 503.

The faults are real SQLite refusals, not mocks: every connection opened during the drill is read-only
(`PRAGMA query_only`, opened with `mode=ro`, or the file chmod-ed read-only) or capped at the pages
the file already has (`PRAGMA max_page_count`, so a write that needs a page fails with SQLITE_FULL).
When the fault clears, writes work again and the file passes `PRAGMA integrity_check`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving.api.integrations.signatures import sign_raqib
from serving.store.engine import DB_FILE
from serving.store.store import Store
from tests.api.conftest import AUTH, MakeClient
from tests.conftest import POLITICS_BODY, SPAM

pytestmark = pytest.mark.api

SECRET = "drill-secret"
# Over one 4 KiB page of UTF-8: every row carrying it needs a page the full store cannot have.
LONG_TEXT = ("للتواصل واتساب ربح مضمون " * 200)[:3000]


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


def _on_connect(*pragmas: str) -> Callable[..., None]:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    return apply


@contextmanager
def query_only(store: Store, _db: Path) -> Iterator[str]:
    """Every connection refuses writes, as a replica or a read-only mount would."""
    listener = _on_connect("PRAGMA query_only = ON")
    sa.event.listen(store.engine, "connect", listener)
    store.engine.dispose()  # fresh connections, each under the fault
    try:
        yield "readonly database"
    finally:
        sa.event.remove(store.engine, "connect", listener)
        store.engine.dispose()


@contextmanager
def opened_read_only(store: Store, db: Path) -> Iterator[str]:
    """Connections open the file read-only (what SQLite does with a file the server may not write)."""

    def connect(_dialect: Any, _record: Any, _args: Any, _params: Any) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False, timeout=30)

    sa.event.listen(store.engine, "do_connect", connect)
    store.engine.dispose()
    try:
        yield "readonly database"
    finally:
        sa.event.remove(store.engine, "do_connect", connect)
        store.engine.dispose()


@contextmanager
def chmod_read_only(store: Store, db: Path) -> Iterator[str]:
    """The database file chmod-ed to 0444 and reopened (only meaningful when not running as root)."""
    mode = db.stat().st_mode
    store.engine.dispose()
    db.chmod(0o444)
    try:
        yield "readonly database"
    finally:
        db.chmod(mode)
        store.engine.dispose()


@contextmanager
def disk_full(store: Store, _db: Path) -> Iterator[str]:
    """No connection may grow the file past the pages it has now: inserts needing a page get SQLITE_FULL."""
    with store.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    listener = _on_connect(f"PRAGMA max_page_count = {pages}")
    sa.event.listen(store.engine, "connect", listener)
    store.engine.dispose()
    try:
        yield "disk is full"
    finally:
        sa.event.remove(store.engine, "connect", listener)
        store.engine.dispose()


FAULTS = [
    pytest.param(query_only, id="query_only"),
    pytest.param(opened_read_only, id="opened_read_only"),
    pytest.param(
        chmod_read_only,
        id="chmod_read_only",
        marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a 0444 file regardless"),
    ),
    pytest.param(disk_full, id="disk_full"),
]


def signed_event(client: TestClient, event: dict[str, Any]) -> Any:
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8")
    return client.post(
        "/v1/webhooks/comments",
        content=raw,
        headers={
            "X-Raqib-Signature": sign_raqib(raw, SECRET.encode(), int(time.time())),
            "Content-Type": "application/json",
        },
    )


def moderated(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "comment.moderated",
        "data": {"comment_id": "c-hook", "label": "spam", "site": "news", "comment": {"text": LONG_TEXT}},
    }


def created(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "comment.created",
        "data": {"comment": {"id": "c-created", "text": LONG_TEXT}, "site": "news"},
    }


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() or 0)


def audit_failures(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("raqib_audit_failures_total "):
            return float(line.split()[1])
    raise AssertionError("raqib_audit_failures_total is not exported")


@pytest.mark.parametrize("fault", FAULTS)
def test_a_store_that_refuses_writes_never_stops_scoring(
    make_client: MakeClient, fault: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(webhook_secret=SECRET)
    store = store_of(client)
    db = Path(store.engine.url.database or "")
    assert db.name == DB_FILE
    feedback = {"comment_id": "c-1", "label": "spam", "site": "news", "comment": {"text": LONG_TEXT}}
    article = {"title": "عنوان", "text": POLITICS_BODY + LONG_TEXT}

    with caplog.at_level(logging.DEBUG, logger="raqib"), fault(store, db) as reason:
        # Scoring answers as usual; only its audit record is lost (and counted).
        for _ in range(3):
            scored = client.post("/v1/score", json={"comment": {"text": LONG_TEXT}}, headers=AUTH)
            assert scored.status_code == 200, scored.text
            assert scored.json()["label"] == "spam"
        batch = client.post(
            "/v1/score/batch", json={"items": [{"comment": {"text": LONG_TEXT}}]}, headers=AUTH
        )
        assert batch.status_code == 200 and batch.json()["results"][0]["ok"] is True
        # Writes the caller asked for are refused, clearly, with nothing recorded.
        for response in (
            client.post("/v1/feedback", json=feedback, headers=AUTH),
            client.put("/v1/articles/a-1", json=article, headers=AUTH),
            signed_event(client, moderated("evt-moderated")),
            signed_event(client, created("evt-created")),
        ):
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "store_unavailable"
            assert reason in error["message"] and "nothing was recorded" in error["message"]
        # Reads still work while writes cannot.
        assert client.get("/v1/articles/a-1", headers=AUTH).status_code == 404

    assert audit_failures(client) == 4.0
    # Once per outage, not per request (the rest only at DEBUG): a full disk must not fill up with logs.
    failures = [r for r in caplog.records if "audit log" in r.getMessage() and r.levelno >= logging.INFO]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert reason in failures[0].getMessage() and LONG_TEXT[:20] not in caplog.text
    for table in ("audit", "feedback", "articles", "webhook_events"):
        assert count(store, table) == 0, table  # nothing half-written

    # The fault clears: the next writes go through, and the file is sound.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="raqib"):
        assert client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH).status_code == 200
    assert "audit log writes work again; 4 decision(s) were not recorded" in caplog.text
    assert client.post("/v1/feedback", json=feedback, headers=AUTH).status_code == 201
    assert client.put("/v1/articles/a-1", json=article, headers=AUTH).status_code == 200
    assert signed_event(client, moderated("evt-moderated")).status_code == 200  # the sender's retry
    assert signed_event(client, created("evt-created")).status_code == 200
    assert (count(store, "audit"), count(store, "feedback")) == (2, 2)
    assert (count(store, "articles"), count(store, "webhook_events")) == (1, 2)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert audit_failures(client) == 4.0


def test_a_store_that_cannot_be_opened_counts_unaudited_decisions(
    make_client: MakeClient, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    client = make_client(state_dir=blocker / "state")  # a directory under a file: cannot exist
    assert client.app.state.service.stores.current is None  # type: ignore[attr-defined]
    assert client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH).status_code == 200
    assert audit_failures(client) == 1.0
