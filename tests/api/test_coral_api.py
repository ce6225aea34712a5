"""Coral Talk: the External Moderation Phase and webhooks, with real X-Coral-Signature headers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api.integrations.signatures import sign_coral
from serving.services.remote import coral_comment_key
from serving.store.store import Store
from serving.text.html import html_to_text
from tests.api.conftest import AUTH, MakeClient
from tests.conftest import ABUSIVE, ON_POLITICS, ON_SPORT, POLITICS_BODY, POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api

SECRET = "coral-secret-new"
OLD_SECRET = "coral-secret-old"
MODERATE = "/v1/integrations/coral/moderate"
WEBHOOK = "/v1/integrations/coral/webhook"


def moderation_body(
    text: str, role: str = "COMMENTER", comment_id: str | None = None, story_id: str = "story-1"
) -> dict:
    """Coral's ExternalModerationRequest (no comment id); `comment_id` adds one, as a relay might."""
    comment: dict[str, Any] = {"body": f"<p>{text}</p>", "parentID": None}
    if comment_id is not None:
        comment["id"] = comment_id
    return {
        "action": "NEW",
        "comment": comment,
        "author": {"id": "user-1", "role": role},
        "story": {"id": story_id, "url": f"https://news.example/{story_id}"},
        "site": {"id": "site-1"},
        "tenantID": "tenant-1",
        "tenantDomain": "comments.news.example",
    }


def send(client: TestClient, path: str, payload: dict[str, Any], secrets: tuple[str, ...] = (SECRET,)) -> Any:
    raw = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    signature = sign_coral(raw, [s.encode() for s in secrets])
    return client.post(
        path, content=raw, headers={"X-Coral-Signature": signature, "Content-Type": "application/json"}
    )


def key_of(text: str, story_id: str = "story-1") -> str:
    """The provisional id Raqib audits a Coral comment under (Coral sends none)."""
    return coral_comment_key(story_id, "user-1", text)


def verdict(response: Any) -> dict[str, Any]:
    """What Coral keeps of the answer: its validator strips unknown keys such as `raqib`."""
    return {key: value for key, value in response.json().items() if key != "raqib"}


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


@pytest.fixture
def coral(make_client: MakeClient) -> TestClient:
    # Rotation on our side: both secrets are accepted while Coral moves from one to the other.
    return make_client(coral_secrets=f"{SECRET},{OLD_SECRET}", coral_timeout_ms=10_000)


def test_spam_is_rejected_with_coral_spam_flag(coral: TestClient) -> None:
    response = send(coral, MODERATE, moderation_body(SPAM[0]))
    assert response.status_code == 200, response.text
    assert verdict(response) == {
        "actions": [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_SPAM"}],
        "status": "REJECTED",
        "tags": [],
    }


def test_abusive_is_flagged_toxic(coral: TestClient) -> None:
    response = send(coral, MODERATE, moderation_body(ABUSIVE[0]))
    assert response.json()["actions"] == [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_TOXIC"}]
    assert response.json()["status"] in ("REJECTED", "SYSTEM_WITHHELD")


def test_review_withholds_and_approve_approves(coral: TestClient) -> None:
    withheld = verdict(send(coral, MODERATE, moderation_body("Please send me all your news")))
    assert withheld == {
        "actions": [{"actionType": "FLAG", "reason": "COMMENT_DETECTED_SPAM"}],
        "status": "SYSTEM_WITHHELD",
        "tags": [],
    }
    approved = send(coral, MODERATE, moderation_body(ON_POLITICS[0]))
    assert verdict(approved) == {"actions": [], "status": "APPROVED", "tags": []}
    # Raqib's own view rides along for operators; no article was known, and the answer says so.
    note = approved.json()["raqib"]
    assert note["comment_id"] == key_of(ON_POLITICS[0]) and note["label"] == "on_topic"
    assert {
        "kind": "article",
        "weight": 0.0,
        "detail": "no article context: story-1 is not stored (nothing to fetch it from); judged without it",
    } in note["reasons"]


def test_off_topic_is_held_without_a_misleading_flag(coral: TestClient) -> None:
    coral.put(
        "/v1/articles/story-1",
        headers=AUTH,
        json={"title": POLITICS_TITLE, "text": POLITICS_BODY, "site": "site-1"},
    )
    response = send(coral, MODERATE, moderation_body(ON_SPORT[0])).json()
    assert response["status"] == "REJECTED" and response["actions"] == []


def test_staff_are_never_rejected(coral: TestClient) -> None:
    for role in ("STAFF", "MODERATOR", "ADMIN"):
        response = send(coral, MODERATE, moderation_body(SPAM[0], role=role)).json()
        assert response["status"] == "SYSTEM_WITHHELD", role
    audit = store_of(coral).audit_for(key_of(SPAM[0]), "site-1")[-1]
    assert audit.decided_action == "review" and audit.source == "coral"


def test_html_is_stripped_before_scoring_and_the_decision_is_audited(coral: TestClient) -> None:
    # Coral's HTML format: spans index the plain text the moderator reads, which is what is audited.
    body = moderation_body(SPAM[0])
    body["comment"]["body"] = f"<div><p><b>{SPAM[0]}</b></p></div>"
    answer = send(coral, MODERATE, body).json()
    audit = store_of(coral).audit_for(key_of(SPAM[0]), "site-1")[0]
    assert audit.text == SPAM[0] and audit.article_id == "story-1" and audit.author_id == "user-1"
    assert audit.model_version == "0-test" and answer["raqib"]["comment_id"] == key_of(SPAM[0])


def test_a_relay_that_adds_a_comment_id_is_audited_under_it(coral: TestClient) -> None:
    send(coral, MODERATE, moderation_body(SPAM[0], comment_id="cmt-relayed"))
    assert len(store_of(coral).audit_for("cmt-relayed", "site-1")) == 1


def test_html_to_text() -> None:
    html = (
        "<p>مرحبا &amp; أهلا</p><script>alert('x')</script><style>p{}</style>"
        "<p>اضغط <a href='https://spam.example/win'>هنا</a><br/>سطر&nbsp;ثان</p>"
    )
    assert html_to_text(html) == "مرحبا & أهلا\nاضغط هنا https://spam.example/win\nسطر ثان"
    assert html_to_text("<a href='https://x.example'>https://x.example</a>") == "https://x.example"


def test_no_model_means_no_opinion(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(coral_secrets=SECRET, model_dir=tmp_path / "missing", coral_timeout_ms=10_000)
    response = send(client, MODERATE, moderation_body(SPAM[0]))
    assert response.status_code == 204 and response.content == b""


def test_observe_mode_has_no_opinion(make_client: MakeClient) -> None:
    client = make_client(coral_secrets=SECRET, sites={"site-1": {"mode": "observe"}}, coral_timeout_ms=10_000)
    assert send(client, MODERATE, moderation_body(SPAM[0])).status_code == 204
    assert store_of(client).audit_for(key_of(SPAM[0]), "site-1")[0].decided_action == "reject"


def test_signatures_rotation_and_refusals(coral: TestClient, client: TestClient) -> None:
    assert send(coral, MODERATE, moderation_body(SPAM[0]), secrets=(OLD_SECRET,)).status_code == 200
    # Coral sends one value per active secret during its own rotation; any may match.
    assert (
        send(coral, MODERATE, moderation_body(SPAM[0]), secrets=("coral-retired", SECRET)).status_code == 200
    )
    wrong = send(coral, MODERATE, moderation_body(SPAM[0]), secrets=("not-ours",))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_signature"
    unsigned = coral.post(MODERATE, json=moderation_body(SPAM[0]))
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "missing_signature"
    closed = send(client, MODERATE, moderation_body(SPAM[0]))  # no coral_secrets configured
    assert closed.status_code == 503 and closed.json()["error"]["code"] == "coral_secret_not_configured"


def test_story_created_fills_the_article_store_without_losing_its_text(coral: TestClient) -> None:
    coral.put("/v1/articles/story-9", headers=AUTH, json={"title": POLITICS_TITLE, "site": "site-1"})
    event = {
        "id": "evt-story",
        "type": "STORY_CREATED",
        "data": {"storyID": "story-9", "storyURL": "https://news.example/story-9", "siteID": "site-1"},
        "createdAt": "2026-11-29T10:00:00.000Z",
        "tenantID": "tenant-1",
        "tenantDomain": "comments.news.example",
    }
    assert send(coral, WEBHOOK, event).status_code == 200
    article = store_of(coral).get_article("story-9", "site-1")
    assert article.url == "https://news.example/story-9" and article.title == POLITICS_TITLE


def left_queue(event_id: str, comment_id: str, status: str) -> dict:
    return {
        "id": event_id,
        "type": "COMMENT_LEFT_MODERATION_QUEUE",
        "data": {"commentID": comment_id, "status": status, "storyID": "story-1", "siteID": "site-1"},
        "tenantID": "tenant-1",
    }


def test_without_corals_api_a_final_status_becomes_feedback_from_the_event(coral: TestClient) -> None:
    # No coral_graphql_url: only the event is known. Comment ids join only when a relay sent them
    # with the phase request; tests/api/test_coral_loop.py covers the real loop through Coral's API.
    send(coral, MODERATE, moderation_body(SPAM[0], comment_id="cmt-spam"))
    send(coral, MODERATE, moderation_body(ON_POLITICS[0], comment_id="cmt-ok"))
    assert send(coral, WEBHOOK, left_queue("e1", "cmt-spam", "REJECTED")).json()["label"] == "spam"
    assert send(coral, WEBHOOK, left_queue("e2", "cmt-ok", "APPROVED")).json()["label"] == "on_topic"
    # Rejected although Raqib approved it: the reason is unknown, so no label is invented.
    assert send(coral, WEBHOOK, left_queue("e3", "cmt-ok2", "REJECTED")).json()["label"] is None
    assert send(coral, WEBHOOK, left_queue("e4", "cmt-x", "PREMOD")).status_code == 204
    again = send(coral, WEBHOOK, left_queue("e1", "cmt-spam", "REJECTED"))
    assert again.json()["label"] == "spam"
    feedback = store_of(coral).feedback_since()
    assert [(f.comment_id, f.label) for f in feedback] == [
        ("cmt-spam", "spam"),
        ("cmt-ok", "on_topic"),
        ("cmt-ok2", None),
    ]
    exported = list(store_of(coral).export_labels())
    assert {(r["comment_id"], r["label"], r["text"]) for r in exported} == {
        ("cmt-spam", "spam", SPAM[0]),
        ("cmt-ok", "on_topic", ON_POLITICS[0]),
    }


def test_other_event_types_are_ignored(coral: TestClient) -> None:
    response = send(coral, WEBHOOK, {"id": "e9", "type": "COMMENT_CREATED", "data": {"commentID": "c"}})
    assert response.status_code == 204


def test_secrets_come_comma_separated_and_stay_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.settings import load_settings

    monkeypatch.setenv("RAQIB_CORAL_SECRETS", "coral-new, coral-old")
    monkeypatch.setenv("RAQIB_WEBHOOK_SECRET", "whsec-1")
    monkeypatch.setenv("RAQIB_STORE_URL", "postgresql+psycopg://raqib:db-password@db/raqib")
    settings = load_settings()
    assert settings.resolved_coral_secrets() == (b"coral-new", b"coral-old")
    assert settings.resolved_webhook_secrets() == (b"whsec-1",)
    shown = repr(settings)
    assert "coral-new" not in shown and "whsec-1" not in shown and "db-password" not in shown
