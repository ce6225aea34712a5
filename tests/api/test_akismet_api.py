"""Akismet-compatible comment-check, submit-spam/ham and verify-key: form in, plain text out."""

from __future__ import annotations

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
