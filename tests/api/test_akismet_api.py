"""Akismet-compatible comment-check, submit-spam/ham and verify-key: form in, plain text out."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from serving.store.store import Store
from tests.api.conftest import API_KEY, AUTH, MakeClient
from tests.conftest import ON_POLITICS, ON_SPORT, POLITICS_BODY, POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api

BLOG = "https://www.news.example"


def form(text: str, key: str = API_KEY, **extra: str) -> dict[str, str]:
    return {
        "api_key": key,
        "blog": BLOG,
        "user_ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
        "comment_type": "comment",
        "comment_author": "reader-1",
        "comment_author_email": "reader@example.com",
        "comment_content": text,
        "blog_lang": "ar",
        **extra,
    }


def check(client: TestClient, data: dict[str, str] | str) -> tuple[str, dict[str, str]]:
    if isinstance(data, str):
        response = client.post(
            "/1.1/comment-check", content=data, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    else:
        response = client.post("/1.1/comment-check", data=data)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text, dict(response.headers)


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


def test_spam_is_true_with_discard_when_raqib_would_reject(client: TestClient) -> None:
    body, headers = check(client, form(SPAM[0]))
    assert body == "true"
    assert headers["x-akismet-pro-tip"] == "discard"


def test_review_is_true_without_discard(client: TestClient) -> None:
    body, headers = check(client, form("Please send me all your news"))
    assert body == "true" and "x-akismet-pro-tip" not in headers


def test_publishable_comment_is_false(client: TestClient) -> None:
    body, headers = check(client, form(ON_POLITICS[0]))
    assert body == "false" and "x-akismet-pro-tip" not in headers


def test_bad_key_is_invalid_with_debug_help(client: TestClient) -> None:
    body, headers = check(client, form(SPAM[0], key="wrong"))
    assert body == "invalid"
    assert "x-akismet-debug-help" in headers and "wrong" not in headers["x-akismet-debug-help"]
    missing = {k: v for k, v in form(SPAM[0]).items() if k != "api_key"}
    assert check(client, missing)[0] == "invalid"


def test_verify_key(client: TestClient, make_client: MakeClient) -> None:
    assert client.post("/1.1/verify-key", data={"key": API_KEY, "blog": BLOG}).text == "valid"
    assert client.post("/1.1/verify-key", data={"api_key": API_KEY, "blog": BLOG}).text == "valid"
    invalid = client.post("/1.1/verify-key", data={"key": "nope", "blog": BLOG})
    assert invalid.text == "invalid" and "x-akismet-debug-help" in invalid.headers
    assert make_client(api_keys=[]).post("/1.1/verify-key", data={"key": "any"}).text == "valid"


def test_comment_context_is_the_article(client: TestClient) -> None:
    # Repeated comment_context[] fields, as Akismet documents them.
    raw = (
        f"api_key={API_KEY}&blog=news.example&comment_type=comment"
        f"&comment_content={ON_SPORT[0]}&comment_context[]={POLITICS_TITLE}&comment_context[]={POLITICS_BODY}"
    )
    assert check(client, raw)[0] == "true"  # a football cheer under a politics story
    assert check(client, form(ON_SPORT[0]))[0] == "false"  # the same comment with no article


def test_permalink_finds_the_stored_article(client: TestClient) -> None:
    client.put(
        "/v1/articles/a-7",
        headers=AUTH,
        json={"title": POLITICS_TITLE, "text": POLITICS_BODY, "url": "https://news.example/politics/a-7"},
    )
    permalink = "https://www.news.example/politics/a-7/?utm_source=feed"
    assert check(client, form(ON_SPORT[0], permalink=permalink))[0] == "true"
    audit = store_of(client).pending()[0]
    assert audit.article_id == "a-7" and audit.site == "news.example" and audit.source == "akismet"


def test_submit_spam_and_ham_become_feedback_joined_to_the_check(client: TestClient) -> None:
    check(client, form(SPAM[3]))
    check(client, form(ON_POLITICS[2]))
    assert len(store_of(client).pending()) == 2
    spam = client.post("/1.1/submit-spam", data=form(SPAM[3]))
    ham = client.post("/1.1/submit-ham", data=form(ON_POLITICS[2]))
    assert spam.text == ham.text == "Thanks for making the web a better place."
    assert spam.headers["content-type"].startswith("text/plain")
    assert store_of(client).pending() == []
    labels = {f.text: (f.label, f.source) for f in store_of(client).feedback_since()}
    assert labels == {SPAM[3]: ("spam", "akismet"), ON_POLITICS[2]: ("on_topic", "akismet")}
    assert client.post("/1.1/submit-spam", data=form(SPAM[3], key="wrong")).text == "invalid"


THANKS = "Thanks for making the web a better place."
GUID = re.compile(r"^[0-9a-f]{32}$")


def audit_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM audit").scalar() or 0)


def test_every_verdict_carries_a_fresh_guid(client: TestClient) -> None:
    _, spam = check(client, form(SPAM[0]))
    _, ham = check(client, form(ON_POLITICS[0]))
    _, empty = check(client, form("   "))
    guids = [headers["x-akismet-guid"] for headers in (spam, ham, empty)]
    assert all(GUID.match(guid) for guid in guids) and len(set(guids)) == 3
    assert "x-akismet-guid" not in check(client, form(SPAM[0], key="wrong"))[1]


@pytest.mark.parametrize("role", ["administrator", "Administrator", "ADMINISTRATOR"])
def test_an_administrators_comment_is_never_spam(client: TestClient, role: str) -> None:
    body, headers = check(client, form(SPAM[0], user_role=role))
    assert body == "false" and "x-akismet-pro-tip" not in headers
    assert GUID.match(headers["x-akismet-guid"])
    assert audit_rows(store_of(client)) == 0  # not scored, so nothing to audit
    assert check(client, form(SPAM[0], user_role="editor"))[0] == "true"


@pytest.mark.parametrize("flag", ["1", "true", "TRUE"])
def test_test_requests_are_answered_but_never_stored(client: TestClient, flag: str) -> None:
    store = store_of(client)
    body, headers = check(client, form(SPAM[4], is_test=flag))
    assert body == "true" and headers["x-akismet-pro-tip"] == "discard"
    assert audit_rows(store) == 0 and store.pending() == []
    for path in ("/1.1/submit-spam", "/1.1/submit-ham"):
        response = client.post(path, data=form(SPAM[4], is_test=flag))
        assert (response.status_code, response.text) == (200, THANKS)
    assert store.feedback_since() == [] and list(store.export_labels()) == []


def test_is_test_false_as_coral_sends_it_is_a_real_request(client: TestClient) -> None:
    store = store_of(client)
    check(client, form(SPAM[4], is_test="false"))
    client.post("/1.1/submit-spam", data=form(SPAM[4], is_test="0"))
    assert audit_rows(store) == 1 and len(store.feedback_since()) == 1


def test_a_comment_longer_than_max_text_chars_joins_its_feedback(make_client: MakeClient) -> None:
    client = make_client(max_text_chars=40)
    store = store_of(client)
    text = f"{SPAM[0]} {SPAM[1]} {SPAM[2]}"
    assert len(text) > 40
    check(client, form(text))
    [audited] = store.pending()
    assert audited.text == text[:40]  # only the scored text is cut
    assert client.post("/1.1/submit-spam", data=form(text)).text == THANKS
    [feedback] = store.feedback_since()
    assert feedback.comment_id == audited.comment_id and feedback.text == text
    assert store.pending() == []


def test_html_bodies_are_scored_and_joined_as_the_text_a_reader_sees(client: TestClient) -> None:
    store = store_of(client)
    html = f"<p>{SPAM[5]}</p><p><b>&nbsp;</b></p>"
    assert check(client, form(html))[0] == "true"
    [audited] = store.pending()
    assert audited.text == SPAM[5]
    assert client.post("/1.1/submit-spam", data=form(html)).text == THANKS
    [feedback] = store.feedback_since()
    assert (feedback.comment_id, feedback.text) == (audited.comment_id, SPAM[5])
    assert store.pending() == []


def test_coral_spam_phase_request_uses_the_stored_story(client: TestClient) -> None:
    # The fields Coral's spam phase (coralproject/talk, pipeline/phases/spam.ts) posts.
    story = "https://www.news.example/politics/a-8"
    client.put(
        "/v1/articles/a-8", headers=AUTH, json={"title": POLITICS_TITLE, "text": POLITICS_BODY, "url": story}
    )
    coral = {
        "api_key": API_KEY,
        "blog": BLOG,
        "user_ip": "203.0.113.9",
        "referrer": "https://www.news.example/politics/a-8",
        "user_agent": "Mozilla/5.0",
        "comment_content": f"<div>{ON_SPORT[0]}</div>",
        "permalink": story,
        "comment_author": "reader-1",
        "comment_type": "comment",
        "is_test": "false",
        "comment_date_gmt": "2024-05-01T10:00:00.000Z",
    }
    body, headers = check(client, coral)
    assert body == "true" and GUID.match(headers["x-akismet-guid"])  # off topic under a politics story
    [audited] = store_of(client).pending()
    assert (audited.article_id, audited.text) == ("a-8", ON_SPORT[0])
