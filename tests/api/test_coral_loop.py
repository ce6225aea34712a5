"""Coral end to end, against a stand-in for Coral's GraphQL API: the requests and events exactly as
Coral sends them (no comment id in the phase, no title anywhere), the article found by itself, and
the moderator's decision turned into a training label — once, even when Coral was down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serving.services.remote import coral_comment_key
from serving.store.records import RemoteJob
from serving.store.store import Store
from tests.api.conftest import MakeClient
from tests.api.coral_fake import TOKEN, FakeCoral
from tests.api.test_coral_api import MODERATE, SECRET, WEBHOOK, send, store_of
from tests.conftest import ON_POLITICS, ON_SPORT, POLITICS_BODY, POLITICS_TITLE
from training.cli.main import app as cli

pytestmark = pytest.mark.api

SITE = "site-1"
STORY = "story-42"
STORY_URL = "https://news.example/politics/story-42"
AUTHOR = "user-17"


def phase_request(
    html: str, story: str = STORY, url: str = STORY_URL, author: str = AUTHOR
) -> dict[str, Any]:
    """ExternalModerationRequest as Coral builds it (external.ts, processPhase): every field, no more."""
    return {
        "action": "NEW",
        "comment": {"body": html, "parentID": None},
        "author": {"id": author, "role": "COMMENTER"},
        "story": {"id": story, "url": url},
        "site": {"id": SITE},
        "tenantID": "tenant-1",
        "tenantDomain": "comments.news.example",
    }


def event(event_id: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """CoralWebhookEventPayload (webhook processor.ts): the event plus tenantID and tenantDomain."""
    return {
        "id": event_id,
        "type": kind,
        "data": data,
        "createdAt": "2026-12-02T10:00:00.000Z",
        "tenantID": "tenant-1",
        "tenantDomain": "comments.news.example",
    }


def status_updated(event_id: str, comment_id: str, new: str, story: str = STORY) -> dict[str, Any]:
    """COMMENT_STATUS_UPDATED's data has no siteID (Subscription/commentStatusUpdated.ts)."""
    return event(
        event_id,
        "COMMENT_STATUS_UPDATED",
        {
            "newStatus": new,
            "oldStatus": "NONE",
            "moderatorID": "moderator-7",
            "commentID": comment_id,
            "commentRevisionID": f"{comment_id}-rev-1",
            "storyID": story,
        },
    )


def left_queue(event_id: str, comment_id: str, status: str, queue: str = "PENDING") -> dict[str, Any]:
    return event(
        event_id,
        "COMMENT_LEFT_MODERATION_QUEUE",
        {"queue": queue, "commentID": comment_id, "status": status, "storyID": STORY, "siteID": SITE},
    )


@pytest.fixture
def fake_coral() -> Iterator[FakeCoral]:
    with FakeCoral() as fake:
        fake.add_story(STORY, STORY_URL, POLITICS_TITLE, description=POLITICS_BODY, section="politics")
        yield fake


@pytest.fixture
def coral(make_client: MakeClient, fake_coral: FakeCoral) -> TestClient:
    return make_client(
        coral_secrets=SECRET,
        coral_timeout_ms=10_000,
        coral_graphql_url=fake_coral.url,
        coral_token=TOKEN,
        # Long enough that the app's own worker never retries behind the test's back.
        coral_retry_base_s=600,
    )


def drain(client: TestClient, later_s: float = 0.0) -> list[RemoteJob]:
    """Run the due jobs now (as the worker would, `later_s` from now); the jobs still waiting."""
    jobs = client.app.state.service.remote.jobs
    store = store_of(client)
    jobs.run_due(store, now=time.time() + later_s)
    return store.waiting_jobs()


def wait_for_article(store: Store, article_id: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        article = store.get_article(article_id, SITE)
        if article is not None and article.title:
            return article
        time.sleep(0.02)
    raise AssertionError(f"article {article_id} was not fetched within {timeout_s} s")


def export(client: TestClient, tmp_path: Path) -> list[dict[str, Any]]:
    state_dir = client.app.state.service.settings.state_dir
    output = tmp_path / "feedback.jsonl"
    result = CliRunner().invoke(cli, ["feedback", "export", "-o", str(output), "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]


def test_story_to_score_to_decision_to_training_label(
    coral: TestClient, fake_coral: FakeCoral, tmp_path: Path
) -> None:
    # 1. STORY_CREATED carries ids only; Raqib asks Coral for the title and keeps it.
    created = event("evt-1", "STORY_CREATED", {"storyID": STORY, "storyURL": STORY_URL, "siteID": SITE})
    answer = send(coral, WEBHOOK, created)
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    assert drain(coral) == []
    article = store_of(coral).get_article(STORY, SITE)
    assert article.title == POLITICS_TITLE and article.url == STORY_URL and article.source == "coral"

    # 2. The phase request, exactly as Coral sends it (HTML body, no comment id, no title).
    html = f"<p>{ON_SPORT[0]}</p>"
    verdict = send(coral, MODERATE, phase_request(html))
    assert verdict.status_code == 200, verdict.text
    note = verdict.json()["raqib"]
    used = [r["detail"] for r in note["reasons"] if r["kind"] == "article"]
    assert used == [f"judged against the stored article «{POLITICS_TITLE}»"]
    key = coral_comment_key(STORY, AUTHOR, ON_SPORT[0])
    assert note["comment_id"] == key
    audit = store_of(coral).audit_for(key, SITE)
    assert len(audit) == 1 and audit[0].text == ON_SPORT[0] and audit[0].article_id == STORY

    # 3. A moderator rejects it in Coral as irrelevant: the event names the comment by Coral's id only.
    fake_coral.add_comment(
        "c-901", html, STORY, AUTHOR, status="REJECTED", history=[("act-1", "REJECTED", "IRRELEVANT_CONTENT")]
    )
    assert send(coral, WEBHOOK, status_updated("evt-2", "c-901", "REJECTED")).status_code == 202
    assert drain(coral) == []

    # Raqib's own score now carries Coral's id, so the queue and the audit show both.
    assert store_of(coral).audit_for(key, SITE) == []
    assert [a.text for a in store_of(coral).audit_for("c-901", SITE)] == [ON_SPORT[0]]
    records = export(coral, tmp_path)
    assert len(records) == 1
    record = records[0]
    assert record["comment_id"] == "c-901" and record["text"] == ON_SPORT[0]
    assert record["label"] == "off_topic" and record["article_title"] == POLITICS_TITLE


def test_coral_down_during_a_decision_is_retried_and_recorded_once(
    coral: TestClient, fake_coral: FakeCoral, tmp_path: Path
) -> None:
    html = f"<p>{ON_POLITICS[0]}</p>"
    send(coral, MODERATE, phase_request(html))
    fake_coral.add_comment(
        "c-7", html, STORY, AUTHOR, status="APPROVED", history=[("act-9", "APPROVED", None)]
    )
    fake_coral.down = True
    assert send(coral, WEBHOOK, left_queue("evt-10", "c-7", "APPROVED")).status_code == 202
    waiting = drain(coral)
    assert [(j.ref, j.attempts) for j in waiting] == [("c-7", 1)]
    assert "503" in (waiting[0].last_error or "")
    # The same decision again from another queue, while the first still waits: one job, not two.
    assert (
        send(coral, WEBHOOK, left_queue("evt-11", "c-7", "APPROVED", queue="UNMODERATED")).status_code == 202
    )
    assert len(store_of(coral).waiting_jobs()) == 1
    assert store_of(coral).feedback_since() == []

    fake_coral.down = False
    assert drain(coral) != []  # not due yet: the retry waits its delay
    assert drain(coral, later_s=3600) == []
    # Coral redelivers and relays the status change too: the label still appears once.
    assert send(coral, WEBHOOK, left_queue("evt-10", "c-7", "APPROVED")).status_code == 202  # replayed
    assert send(coral, WEBHOOK, status_updated("evt-12", "c-7", "APPROVED")).status_code == 202
    assert drain(coral) == []
    feedback = store_of(coral).feedback_since()
    assert [(f.comment_id, f.label, f.text) for f in feedback] == [("c-7", "on_topic", ON_POLITICS[0])]
    assert [(r["comment_id"], r["label"]) for r in export(coral, tmp_path)] == [("c-7", "on_topic")]


def test_rejection_reasons_map_to_labels_and_unusable_ones_are_not_exported(
    coral: TestClient, fake_coral: FakeCoral, tmp_path: Path
) -> None:
    cases = {
        "c-spam": ("اربح ١٠٠٠ دولار يوميا راسلني واتساب", "SPAM", "spam"),
        "c-abuse": ("أنت حمار وغبي", "OFFENSIVE", "abusive"),
        "c-other": ("تعليق عادي عن الخبر", "MISINFORMATION", None),
        "c-none": ("تعليق آخر عن الموضوع نفسه", None, None),
    }
    for number, (comment_id, (text, code, _)) in enumerate(cases.items()):
        html = f"<p>{text}</p>"
        fake_coral.add_comment(
            comment_id, html, STORY, AUTHOR, "REJECTED", [(f"a-{number}", "REJECTED", code)]
        )
        send(coral, WEBHOOK, status_updated(f"evt-r{number}", comment_id, "REJECTED"))
    assert drain(coral) == []
    recorded = {f.comment_id: (f.label, f.reason) for f in store_of(coral).feedback_since()}
    assert recorded == {comment_id: (label, code) for comment_id, (_, code, label) in cases.items()}
    exported = {r["comment_id"]: r["label"] for r in export(coral, tmp_path)}
    assert exported == {"c-spam": "spam", "c-abuse": "abusive"}


def test_a_held_comment_gets_corals_id_when_it_enters_the_queue(
    coral: TestClient, fake_coral: FakeCoral
) -> None:
    html = "<p>Please send me all your news</p>"
    held = send(coral, MODERATE, phase_request(html)).json()
    assert held["status"] == "SYSTEM_WITHHELD"
    fake_coral.add_comment("c-held", html, STORY, AUTHOR, status="SYSTEM_WITHHELD")
    entered = event(
        "evt-q",
        "COMMENT_ENTERED_MODERATION_QUEUE",
        {
            "queue": "PENDING",
            "commentID": "c-held",
            "status": "SYSTEM_WITHHELD",
            "storyID": STORY,
            "siteID": SITE,
        },
    )
    assert send(coral, WEBHOOK, entered).status_code == 202
    assert drain(coral) == []
    assert store_of(coral).audit_for(held["raqib"]["comment_id"], SITE) == []
    assert len(store_of(coral).audit_for("c-held", SITE)) == 1
    assert store_of(coral).feedback_since() == []  # held is not a verdict


def test_first_comment_on_an_unknown_story_is_scored_at_once_and_the_story_fetched(
    coral: TestClient, fake_coral: FakeCoral
) -> None:
    fake_coral.add_story("story-new", "https://news.example/story-new", "عنوان خبر جديد")
    first = send(coral, MODERATE, phase_request(f"<p>{ON_POLITICS[1]}</p>", story="story-new"))
    assert first.status_code == 200
    details = [r["detail"] for r in first.json()["raqib"]["reasons"] if r["kind"] == "article"]
    assert details == [
        "no article context: story-new is not known yet and is being fetched; judged without it"
    ]
    assert wait_for_article(store_of(coral), "story-new").title == "عنوان خبر جديد"
    second = send(coral, MODERATE, phase_request(f"<p>{ON_POLITICS[2]}</p>", story="story-new"))
    details = [r["detail"] for r in second.json()["raqib"]["reasons"] if r["kind"] == "article"]
    assert details == ["judged against the stored article «عنوان خبر جديد»"]


def test_a_token_coral_refuses_keeps_the_event(make_client: MakeClient, fake_coral: FakeCoral) -> None:
    client = make_client(
        coral_secrets=SECRET,
        coral_graphql_url=fake_coral.url,
        coral_token="wrong-token",
        coral_retry_base_s=600,
    )
    fake_coral.add_comment("c-1", "<p>x</p>", STORY, AUTHOR, "APPROVED", [("a", "APPROVED", None)])
    assert send(client, WEBHOOK, left_queue("evt-t", "c-1", "APPROVED")).status_code == 202
    waiting = drain(client)
    assert len(waiting) == 1 and "401" in (waiting[0].last_error or "")
