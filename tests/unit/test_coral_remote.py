"""Coral's API client, the decision → label rule, the provisional comment key and the store's jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.remote.coral import CoralGraphQL, CoralUnavailable
from serving.services.remote import coral_comment_key, decision_label
from serving.store.records import AuditEntry, FeedbackEntry
from serving.store.store import Store
from serving.text.html import html_to_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("status", "code", "raqib", "label"),
    [
        ("APPROVED", None, "spam", "on_topic"),  # a person published it: Raqib's hold was wrong
        ("REJECTED", "IRRELEVANT_CONTENT", None, "off_topic"),
        ("REJECTED", "SPAM", None, "spam"),
        ("REJECTED", "AD", None, "spam"),
        ("REJECTED", "OFFENSIVE", "spam", "abusive"),  # the moderator's reason wins over Raqib's label
        ("REJECTED", "HATE_SPEECH", None, "abusive"),
        ("REJECTED", "MISINFORMATION", "spam", None),
        ("REJECTED", "OTHER", None, None),
        ("REJECTED", None, "abusive", "abusive"),  # no reason: Raqib's confirmed hold
        ("REJECTED", None, None, None),
        ("SYSTEM_WITHHELD", None, "spam", None),
        ("PREMOD", None, None, None),
    ],
)
def test_decision_label(status: str, code: str | None, raqib: str | None, label: str | None) -> None:
    assert decision_label(status, code, raqib) == label


def test_the_provisional_key_is_the_same_for_corals_html_and_plain_formats() -> None:
    html = "<p>تعليق   على  الخبر</p><p>سطر ثان</p>"
    plain = "تعليق على الخبر\nسطر ثان"  # Coral's own plain-text rendering of the same body
    assert coral_comment_key("s-1", "u-1", html_to_text(html)) == coral_comment_key("s-1", "u-1", plain)
    assert coral_comment_key("s-1", "u-1", plain) != coral_comment_key("s-2", "u-1", plain)
    assert coral_comment_key("s-1", "u-1", plain) != coral_comment_key("s-1", "u-2", plain)
    assert coral_comment_key("s-1", "u-1", plain).startswith("coral:")


def client_answering(handler: Any) -> CoralGraphQL:
    return CoralGraphQL("https://coral.example/api/graphql", "tok", transport=httpx.MockTransport(handler))


def test_the_client_reads_corals_shapes_and_tolerates_missing_parts() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        body = json.loads(request.content)
        seen.append(body)
        if body["query"].lstrip().startswith("query RaqibStory"):
            return httpx.Response(200, json={"data": {"story": {"id": "s", "url": "u", "metadata": None}}})
        return httpx.Response(
            200,
            json={
                "data": {
                    "comment": {
                        "id": "c",
                        "body": "<p>x</p>",
                        "status": "REJECTED",
                        "story": {"id": "s", "url": "u", "metadata": {"title": " عنوان "}},
                        "author": None,
                        "site": {"id": "site"},
                        "statusHistory": {
                            "nodes": [
                                {"id": "a1", "status": "APPROVED", "rejectionReason": None},
                                {"id": "a2", "status": "REJECTED", "rejectionReason": {"code": "SPAM"}},
                                {"id": "a3", "status": "NONE"},
                                {"junk": True},
                            ]
                        },
                        "unknownField": 1,
                    }
                }
            },
        )

    client = client_answering(handler)
    story = client.story("s")
    assert story is not None and story.title is None and story.url == "u"
    comment = client.comment("c")
    assert comment is not None and comment.author_id is None and comment.site_id == "site"
    assert comment.story is not None and comment.story.title == "عنوان"
    latest = comment.latest()  # the latest action that set the current status
    assert latest is not None and (latest.id, latest.rejection_code) == ("a2", "SPAM")
    assert seen[1]["variables"] == {"id": "c"}


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="down"),
        httpx.Response(401, json={"errors": [{"message": "not authorized"}]}),
        httpx.Response(200, json={"errors": [{"message": "statusHistory: forbidden"}], "data": None}),
        httpx.Response(200, text="<html>proxy error</html>"),
        httpx.Response(200, json={"nothing": True}),
    ],
)
def test_every_unusable_answer_is_unavailable_so_the_job_is_kept(answer: httpx.Response) -> None:
    with pytest.raises(CoralUnavailable):
        client_answering(lambda request: answer).comment("c")


def test_a_network_failure_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(CoralUnavailable, match="unreachable"):
        client_answering(refuse).story("s")


def test_an_unknown_comment_or_story_is_none() -> None:
    client = client_answering(
        lambda request: httpx.Response(200, json={"data": {"comment": None, "story": None}})
    )
    assert client.comment("c") is None and client.story("s") is None


def test_jobs_wait_once_per_ref_and_keep_their_failures(store: Store) -> None:
    with store.write() as writer:
        assert writer.add_job("coral_decision", "site", "c-1")
        assert not writer.add_job("coral_decision", "site", "c-1")  # already waiting
        assert writer.add_job("coral_decision", "other", "c-1")
    now = datetime.now(UTC)
    first = store.due_jobs(now)[0]
    store.job_failed(first.id, "Coral GraphQL answered HTTP 503", now + timedelta(minutes=5))
    assert [j.ref for j in store.due_jobs(now)] == ["c-1"] and store.due_jobs(now)[0].site == "other"
    later = store.due_jobs(now + timedelta(minutes=6))
    assert {(j.site, j.attempts) for j in later} == {("site", 1), ("other", 0)}
    with store.write() as writer:
        for job in later:
            writer.finish_job(job.id)
    assert store.waiting_jobs() == []


def test_linking_renames_the_provisional_id_in_audit_and_feedback_of_that_site_only(store: Store) -> None:
    def audit(site: str) -> AuditEntry:
        return AuditEntry(
            text="t",
            label="spam",
            action="review",
            decided_action="review",
            decided_label="spam",
            scores={"spam": 0.9},
            model_name="m",
            model_version="1",
            source="coral",
            comment_id="coral:abc",
            site=site,
        )

    store.record_audit([audit("a"), audit("b")])
    store.record_feedback(FeedbackEntry(comment_id="coral:abc", label="spam", source="queue", site="a"))
    with store.write() as writer:
        assert writer.link_comment("a", "coral:abc", "c-9") == 2
    assert len(store.audit_for("c-9", "a")) == 1 and store.audit_for("coral:abc", "a") == []
    assert len(store.audit_for("coral:abc", "b")) == 1
    assert [f.comment_id for f in store.feedback_since()] == ["c-9"]


def test_corals_token_comes_from_the_setting_a_file_or_the_secrets_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.settings import Settings, SettingsError

    assert Settings(coral_token=" pat-1 ").resolved_coral_token() == "pat-1"
    token_file = tmp_path / "coral_token"
    token_file.write_text("# Coral access token\npat-2\n", encoding="utf-8")
    assert Settings(coral_token_file=token_file).resolved_coral_token() == "pat-2"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "raqib_coral_token").write_text("pat-3", encoding="utf-8")
    monkeypatch.setenv("RAQIB_SECRETS_DIR", str(secrets))
    settings = Settings()
    assert settings.resolved_coral_token() == "pat-3" and "pat-3" not in repr(settings)
    monkeypatch.delenv("RAQIB_SECRETS_DIR")
    assert Settings().resolved_coral_token() is None
    with pytest.raises(SettingsError, match="coral_token"):
        Settings(coral_token_file=tmp_path / "missing").resolved_coral_token()


@pytest.mark.parametrize("host", ["https://news.example", "news.example:8080", "news.example/politics", ""])
def test_article_hosts_are_bare_host_names(host: str) -> None:
    from pydantic import ValidationError

    from serving.settings import SitePolicy

    with pytest.raises(ValidationError, match="article_hosts"):
        SitePolicy(article_hosts=[host])
