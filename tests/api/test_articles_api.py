"""The article store: PUT/GET /v1/articles/{id}, and scoring a comment that names only its article."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, MakeClient
from tests.conftest import ON_POLITICS, ON_SPORT, POLITICS_BODY, POLITICS_TITLE, SPORT_BODY, SPORT_TITLE

pytestmark = pytest.mark.api

POLITICS = {"title": POLITICS_TITLE, "text": POLITICS_BODY, "url": "https://news.example/politics/a-1"}


def score(client: TestClient, text: str, article: dict | None, site: str | None = None) -> dict:
    body = {"comment": {"id": "c-1", "text": text}, "article": article, "site": site}
    response = client.post("/v1/score", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_put_then_get(client: TestClient) -> None:
    put = client.put("/v1/articles/a-1", json={**POLITICS, "site": "news"}, headers=AUTH)
    assert put.status_code == 200, put.text
    assert put.json()["id"] == "a-1" and put.json()["site"] == "news"
    got = client.get("/v1/articles/a-1", params={"site": "news"}, headers=AUTH).json()
    assert (got["title"], got["text"], got["url"]) == (POLITICS_TITLE, POLITICS_BODY, POLITICS["url"])
    assert got["updated_at"]
    missing = client.get("/v1/articles/nope", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "article_not_found"


def test_ids_with_slashes_and_auth(client: TestClient) -> None:
    assert client.put("/v1/articles/2026/11/story", json=POLITICS, headers=AUTH).status_code == 200
    assert client.get("/v1/articles/2026/11/story", headers=AUTH).json()["id"] == "2026/11/story"
    assert client.put("/v1/articles/a-1", json=POLITICS).status_code == 401
    empty = client.put("/v1/articles/a-1", json={"site": "news"}, headers=AUTH)
    assert empty.status_code == 422


def test_a_comment_naming_only_its_article_is_judged_against_the_stored_text(client: TestClient) -> None:
    without = score(client, ON_SPORT[0], {"id": "a-1"})
    assert without["label"] == "on_topic"  # nothing known about a-1 yet
    client.put("/v1/articles/a-1", json=POLITICS, headers=AUTH)
    with_article = score(client, ON_SPORT[0], {"id": "a-1"})
    assert with_article["label"] == "off_topic"  # a football cheer under a politics story
    assert with_article["scores"]["off_topic"] > without["scores"]["off_topic"] + 0.5
    english = score(client, "Please send me all your news", {"id": "a-1"})
    assert "comment is English/Latin-script, article is Arabic" in [r["detail"] for r in english["reasons"]]


def test_the_article_url_finds_it_too(client: TestClient) -> None:
    client.put("/v1/articles/a-1", json=POLITICS, headers=AUTH)
    result = score(client, ON_SPORT[0], {"url": "http://www.news.example/politics/a-1/#comments"})
    assert result["label"] == "off_topic"


def test_request_title_and_text_win_over_stored_ones(client: TestClient) -> None:
    client.put("/v1/articles/a-1", json=POLITICS, headers=AUTH)
    result = score(client, ON_SPORT[0], {"id": "a-1", "title": SPORT_TITLE, "text": SPORT_BODY})
    assert result["label"] == "on_topic"


def test_sites_keep_their_own_articles(client: TestClient) -> None:
    client.put("/v1/articles/a-1", json={**POLITICS, "site": "politics-site"}, headers=AUTH)
    assert score(client, ON_SPORT[0], {"id": "a-1"}, site="politics-site")["label"] == "off_topic"
    assert score(client, ON_SPORT[0], {"id": "a-1"}, site="sport-site")["label"] == "on_topic"


def test_batch_items_use_the_store_and_are_audited(client: TestClient) -> None:
    client.put("/v1/articles/a-1", json=POLITICS, headers=AUTH)
    items = [
        {"comment": {"id": "b-1", "text": ON_SPORT[0]}, "article": {"id": "a-1"}},
        {"comment": {"id": "b-2", "text": ON_POLITICS[0]}, "article": {"id": "a-1"}},
    ]
    results = client.post("/v1/score/batch", json={"items": items}, headers=AUTH).json()["results"]
    assert [r["label"] for r in results] == ["off_topic", "on_topic"]
    store = client.app.state.service.stores.current
    assert {r.comment_id: r.source for r in store.pending()} == {"b-1": "batch", "b-2": "batch"}


def test_large_articles_fit_under_the_article_body_limit(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000, max_article_body_bytes=200_000)
    long_text = POLITICS_BODY * 100  # ~30 KB of Arabic
    assert client.put("/v1/articles/long", json={"text": long_text}, headers=AUTH).status_code == 200
    too_big = client.put("/v1/articles/long", json={"text": long_text * 10}, headers=AUTH)
    assert too_big.status_code == 413


def test_without_a_store_scoring_works_and_store_routes_say_503(
    make_client: MakeClient, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    client = make_client(state_dir=blocker / "state")  # cannot be created, even by root
    assert score(client, ON_POLITICS[0], {"id": "a-1", "title": POLITICS_TITLE})["action"] == "approve"
    for response in (
        client.put("/v1/articles/a-1", json=POLITICS, headers=AUTH),
        client.get("/v1/articles/a-1", headers=AUTH),
        client.post("/v1/feedback", json={"comment_id": "c-1", "label": "spam"}, headers=AUTH),
    ):
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "store_unavailable"
        assert "cannot open the store" in error["message"] and "scoring still works" in error["message"]
        assert str(blocker) not in error["message"]
    assert client.get("/readyz").status_code == 200


def test_the_store_is_retried_once_it_can_be_opened(
    make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.store.store import StoreHolder

    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    client = make_client(state_dir=blocker / "state")
    assert client.put("/v1/articles/a-1", json=POLITICS, headers=AUTH).status_code == 503
    blocker.unlink()  # the operator fixes the disk
    monkeypatch.setattr(StoreHolder, "RETRY_SECONDS", 0.0)
    assert client.put("/v1/articles/a-1", json=POLITICS, headers=AUTH).status_code == 200
    assert client.get("/v1/articles/a-1", headers=AUTH).json()["title"] == POLITICS_TITLE
