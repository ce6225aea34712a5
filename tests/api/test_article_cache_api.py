"""The article cache seen from the API: comments under one article compute its features once, a new
text under the same article id replaces them, and GET /v1/model says so."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, MakeClient

STORY = {"id": "story-1", "title": "الحكومة تعلن موازنة جديدة", "text": "أعلنت الحكومة موازنة العام المقبل"}


def cache(client: TestClient) -> dict[str, int]:
    response = client.get("/v1/model", headers=AUTH)
    assert response.status_code == 200
    found: dict[str, int] = response.json()["article_cache"]
    return found


def score(client: TestClient, text: str, article: dict[str, str], site: str = "news") -> dict[str, object]:
    response = client.post(
        "/v1/score", json={"comment": {"text": text}, "article": article, "site": site}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_comments_under_one_article_share_its_features_and_a_new_text_replaces_them(
    make_client: MakeClient,
) -> None:
    client = make_client(article_cache_entries=50, article_cache_mb=8)
    start = cache(client)  # the warm-up's article is already there
    assert start["max_entries"] == 50 and start["max_bytes"] == 8 * 1024 * 1024
    first = score(client, "الموازنة لا تكفي الرواتب", STORY)
    score(client, "متى تصرف الرواتب؟", STORY)
    after = cache(client)
    assert after["misses"] == start["misses"] + 1 and after["hits"] == start["hits"] + 1
    assert after["entries"] == start["entries"] + 1 and after["bytes"] > start["bytes"]
    # the CMS corrected the story: same id, new text
    edited = {**STORY, "text": "أعلنت الحكومة موازنة العام المقبل بعجز أكبر"}
    again = score(client, "الموازنة لا تكفي الرواتب", edited)
    final = cache(client)
    assert final["replaced"] == after["replaced"] + 1 and final["entries"] == after["entries"]
    assert set(again) == set(first)


def test_a_cache_of_no_entries_scores_the_same(make_client: MakeClient) -> None:
    cached = make_client()
    uncached = make_client(article_cache_entries=0)
    for text in ("الموازنة لا تكفي الرواتب", "واتساب 0551234567 ربح مضمون"):
        for _ in range(2):
            a, b = score(cached, text, STORY), score(uncached, text, STORY)
            assert (a["label"], a["scores"], a["reasons"]) == (b["label"], b["scores"], b["reasons"])
    assert cache(uncached)["entries"] == 0
