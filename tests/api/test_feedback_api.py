"""POST /v1/feedback, and the audit log of every /v1/score decision that feedback joins."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from serving.store.store import Store
from serving.store.writer import StoreWriter
from tests.api.conftest import AUTH
from tests.conftest import POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


def test_feedback_is_recorded_and_acknowledged(client: TestClient) -> None:
    body = {
        "comment_id": 42,
        "label": "spam",
        "moderator": "mod-1",
        "site": "news",
        "comment": "اتصل واتساب 0551234567",
        "article": {"id": "a-1", "title": POLITICS_TITLE},
    }
    response = client.post("/v1/feedback", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    result = response.json()
    assert set(result) == {"id", "comment_id", "site", "label", "known_label", "created_at"}
    assert (result["comment_id"], result["label"], result["known_label"]) == ("42", "spam", True)
    (stored,) = store_of(client).feedback_since()
    assert (stored.text, stored.moderator, stored.article_title, stored.source) == (
        body["comment"],
        "mod-1",
        POLITICS_TITLE,
        "api",
    )


def test_site_labels_are_allowed_but_must_be_well_formed(client: TestClient) -> None:
    promo = client.post("/v1/feedback", json={"comment_id": "c", "label": "promo"}, headers=AUTH)
    assert promo.status_code == 201 and promo.json()["known_label"] is False
    for bad in ("Spam", "off-topic", "", "x" * 41, "1spam"):
        response = client.post("/v1/feedback", json={"comment_id": "c", "label": bad}, headers=AUTH)
        assert response.status_code == 422, bad
        error = response.json()["error"]
        assert error["field"] == "label"
        # The message names the label the caller sent, not a template placeholder.
        assert error["message"].startswith(f"label {bad!r} is not"), error["message"]
    assert client.post("/v1/feedback", json={"comment_id": "c", "label": "spam"}).status_code == 401
    missing = client.post("/v1/feedback", json={"label": "spam"}, headers=AUTH)
    assert missing.json()["error"] == {
        "code": "missing_field",
        "message": "Field required",
        "field": "comment_id",
    }


def test_every_score_is_audited_and_feedback_takes_it_off_the_queue(client: TestClient) -> None:
    scored = client.post(
        "/v1/score",
        headers=AUTH,
        json={"comment": {"id": "c-1", "text": SPAM[0], "author": "u-7"}, "site": "news"},
    ).json()
    (audit,) = store_of(client).pending(site="news")
    assert (audit.comment_id, audit.action, audit.decided_label, audit.author_id) == (
        "c-1",
        "reject",
        "spam",
        "u-7",
    )
    assert audit.scores == scored["scores"] and audit.model_version == scored["model"]["version"]
    assert audit.source == "score"
    client.post("/v1/feedback", json={"comment_id": "c-1", "label": "spam", "site": "news"}, headers=AUTH)
    assert store_of(client).pending(site="news") == []
    (record,) = store_of(client).export_labels()
    assert (record["text"], record["label"], record["author"]) == (SPAM[0], "spam", None)


def test_a_failed_write_is_503_and_leaves_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_error(self: StoreWriter, *args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(StoreWriter, "add_feedback", disk_error)
    response = client.post("/v1/feedback", json={"comment_id": "c-1", "label": "spam"}, headers=AUTH)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert "disk I/O error" in response.json()["error"]["message"]
    assert store_of(client).feedback_since() == []


def test_an_audit_failure_never_fails_scoring_nor_logs_the_text(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_error(self: StoreWriter, *args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(StoreWriter, "add_audit", disk_error)
    with caplog.at_level(logging.DEBUG):
        response = client.post("/v1/score", headers=AUTH, json={"comment": {"text": SPAM[0]}})
    assert response.status_code == 200
    assert "not written to the audit log" in caplog.text and "disk is full" in caplog.text
    assert SPAM[0] not in caplog.text
