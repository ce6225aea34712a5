"""POST /v1/webhooks/comments: real signed requests, rotation, staleness, replays, each event type."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from serving.api.integrations.signatures import hmac_hex, sign_raqib
from serving.store.store import Store
from serving.store.writer import StoreWriter
from tests.api.conftest import AUTH, MakeClient
from tests.conftest import ON_SPORT, POLITICS_BODY, POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api

SECRET = "whsec-current"
OLD_SECRET = "whsec-previous"
PATH = "/v1/webhooks/comments"


def body_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def post(
    client: TestClient, event: dict[str, Any] | bytes, secret: str = SECRET, timestamp: int | None = None
) -> Any:
    raw = event if isinstance(event, bytes) else body_of(event)
    header = sign_raqib(raw, secret.encode(), timestamp)
    return client.post(
        PATH, content=raw, headers={"X-Raqib-Signature": header, "Content-Type": "application/json"}
    )


def created(event_id: str = "evt-1", text: str = SPAM[0], **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "comment.created",
        "created_at": "2026-11-29T10:00:00Z",
        "data": {"comment": {"id": "c-1", "text": text, "author": "u-1"}, "site": "news", **data},
    }


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


def audit_rows(client: TestClient) -> int:
    with store_of(client).engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM audit").scalar() or 0)


@pytest.fixture
def hooked(make_client: MakeClient) -> TestClient:
    return make_client(webhook_secret=f"{SECRET},{OLD_SECRET}")


def test_comment_created_is_scored_and_answered_like_v1_score(hooked: TestClient) -> None:
    response = post(hooked, created())
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {"comment_id", "label", "scores", "action", "decision", "reasons", "spans", "model"}
    assert (result["comment_id"], result["label"], result["action"]) == ("c-1", "spam", "reject")
    direct = hooked.post(
        "/v1/score", headers=AUTH, json={"comment": {"id": "c-1", "text": SPAM[0]}, "site": "news"}
    ).json()
    assert result["scores"] == direct["scores"] and result["decision"] == direct["decision"]
    row = store_of(hooked).audit_for("c-1", "news")[0]
    assert (row.source, row.action, row.decided_label, row.author_id) == ("webhook", "reject", "spam", "u-1")


def test_either_rotated_secret_is_accepted(hooked: TestClient) -> None:
    assert post(hooked, created("evt-a"), secret=SECRET).status_code == 200
    assert post(hooked, created("evt-b"), secret=OLD_SECRET).status_code == 200


def test_wrong_secret_missing_and_malformed_signatures_are_401(hooked: TestClient) -> None:
    response = post(hooked, created(), secret="not-the-secret")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_signature"
    unsigned = hooked.post(PATH, json=created())
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "missing_signature"
    bad = hooked.post(PATH, content=body_of(created()), headers={"X-Raqib-Signature": "v1=abc"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_signature"
    assert audit_rows(hooked) == 0


def test_a_signature_over_other_bytes_fails(hooked: TestClient) -> None:
    raw = body_of(created())
    header = sign_raqib(raw, SECRET.encode())
    tampered = raw.replace(b'"c-1"', b'"c-2"')
    response = hooked.post(PATH, content=tampered, headers={"X-Raqib-Signature": header})
    assert response.status_code == 401


def test_stale_timestamp_is_refused(hooked: TestClient) -> None:
    now = int(time.time())
    assert post(hooked, created("evt-old"), timestamp=now - 301).status_code == 401
    assert (
        post(hooked, created("evt-future"), timestamp=now + 400).json()["error"]["code"] == "stale_signature"
    )
    assert post(hooked, created("evt-ok"), timestamp=now - 200).status_code == 200


def test_the_recipe_in_the_docs_matches(hooked: TestClient) -> None:
    raw = body_of(created("evt-doc"))
    t = int(time.time())
    header = f"t={t},v1={hmac_hex(SECRET.encode(), f'{t}.'.encode() + raw)}"
    assert hooked.post(PATH, content=raw, headers={"X-Raqib-Signature": header}).status_code == 200


def test_replay_returns_the_first_answer_and_writes_nothing_twice(hooked: TestClient) -> None:
    first = post(hooked, created("evt-replay"))
    again = post(hooked, created("evt-replay"))  # re-signed with a new timestamp, same body
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert audit_rows(hooked) == 1
    other_body = post(hooked, created("evt-replay", text=ON_SPORT[0]))
    assert other_body.status_code == 409 and other_body.json()["error"]["code"] == "event_id_reused"
    assert audit_rows(hooked) == 1


def test_comment_moderated_records_feedback_once(hooked: TestClient) -> None:
    event = {
        "id": "evt-mod",
        "type": "comment.moderated",
        "data": {"comment_id": "c-9", "label": "off_topic", "moderator": "mod-2", "site": "news"},
    }
    first = post(hooked, event)
    assert first.status_code == 200, first.text
    assert first.json()["label"] == "off_topic" and first.json()["known_label"] is True
    assert post(hooked, event).json() == first.json()
    feedback = store_of(hooked).feedback_since()
    assert [(f.comment_id, f.label, f.moderator, f.source) for f in feedback] == [
        ("c-9", "off_topic", "mod-2", "webhook")
    ]


def test_article_published_fills_the_article_store_used_for_scoring(hooked: TestClient) -> None:
    article = {"id": "a-7", "title": POLITICS_TITLE, "text": POLITICS_BODY, "url": "https://news.example/a-7"}
    response = post(
        hooked, {"id": "evt-art", "type": "article.published", "data": {**article, "site": "news"}}
    )
    assert response.status_code == 200 and response.json()["id"] == "a-7"
    scored = post(hooked, created("evt-sport", text=ON_SPORT[0], article={"id": "a-7"})).json()
    assert scored["label"] == "off_topic"  # a football cheer under the stored politics story


def test_unknown_event_types_are_acknowledged_without_writing(hooked: TestClient) -> None:
    response = post(hooked, {"id": "evt-x", "type": "comment.liked", "data": {}})
    assert response.status_code == 204
    assert store_of(hooked).get_event("webhook", "evt-x") is None


def test_invalid_event_data_names_the_field(hooked: TestClient) -> None:
    response = post(
        hooked, {"id": "evt-bad", "type": "comment.moderated", "data": {"comment_id": "c", "label": "Spam"}}
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "invalid_label",
        "message": response.json()["error"]["message"],
        "field": "data.label",
    }
    assert post(hooked, b"{not json").status_code == 400


def test_without_a_secret_the_webhook_is_closed(client: TestClient) -> None:
    response = post(client, created())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhook_secret_not_configured"


def test_a_store_failure_is_503_and_writes_nothing(
    hooked: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_error(self: StoreWriter, *args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(StoreWriter, "add_event", disk_error)
    response = post(hooked, created("evt-disk"))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert "disk I/O error" in response.json()["error"]["message"]
    assert audit_rows(hooked) == 0  # the audit row was in the same, rolled-back transaction
    monkeypatch.undo()
    assert post(hooked, created("evt-disk")).status_code == 200  # the sender's retry goes through
    assert audit_rows(hooked) == 1
