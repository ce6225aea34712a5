"""POST /v1/score/batch: one model call, per-item results and per-item errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.model.moderation import ModerationModel
from tests.api.conftest import AUTH, MakeClient
from tests.conftest import ON_POLITICS, POLITICS_BODY, POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api

ARTICLE = {"title": POLITICS_TITLE, "text": POLITICS_BODY}


def item(text: object, **extra: object) -> dict:
    return {"comment": {"text": text}, "article": ARTICLE, **extra}


def test_mixed_batch_scores_good_items_and_reports_bad_ones(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(max_text_chars=200)
    calls: list[int] = []
    original = ModerationModel.score

    def counting_score(self: ModerationModel, items, thresholds=None, explain=True):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        return original(self, items, thresholds, explain)

    monkeypatch.setattr(ModerationModel, "score", counting_score)
    items = [
        item(ON_POLITICS[0]),
        item("   "),  # empty text
        item("ب" * 201),  # too long for max_text_chars=200
        item(12345),  # wrong type
        "not an object",
        {"article": ARTICLE},  # no comment
        item(SPAM[0]),
    ]
    response = client.post("/v1/score/batch", json={"items": items}, headers=AUTH)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["ok"] for r in results] == [True, False, False, False, False, False, True]
    assert calls == [2], "all valid items go to the model in one call"

    errors = {r["index"]: r["error"] for r in results if not r["ok"]}
    assert errors[1] == {"code": "empty_text", "message": "comment text is empty", "field": "comment.text"}
    assert errors[2]["code"] == "text_too_long" and errors[2]["field"] == "comment.text"
    assert errors[3]["code"] == "invalid_type" and errors[3]["field"] == "comment.text"
    assert errors[4]["code"] == "invalid_type" and errors[4]["field"] is None
    assert errors[5]["code"] == "missing_field" and errors[5]["field"] == "comment"

    first, last = results[0], results[-1]
    assert first["label"] == "on_topic" and first["action"] == "approve"
    assert last["label"] == "spam" and last["action"] == "reject"
    assert last["model"]["version"] == "0-test"


def test_batch_applies_site_policy_per_item(make_client: MakeClient) -> None:
    client = make_client(sites={"watch": {"mode": "observe"}})
    response = client.post(
        "/v1/score/batch", headers=AUTH, json={"items": [item(SPAM[0], site="watch"), item(SPAM[0])]}
    )
    watched, enforced = response.json()["results"]
    assert watched["action"] == "approve" and watched["decision"]["action"] == "reject"
    assert enforced["action"] == "reject"


def test_empty_batch_is_fine(client: TestClient) -> None:
    response = client.post("/v1/score/batch", json={"items": []}, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"results": []}


def test_too_many_items_is_413(make_client: MakeClient) -> None:
    client = make_client(max_batch_items=3)
    response = client.post("/v1/score/batch", json={"items": [item("نص")] * 4}, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_items"
    assert response.json()["error"]["field"] == "items"


def test_batch_without_items_list_is_422(client: TestClient) -> None:
    response = client.post("/v1/score/batch", json={"items": "nope"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "items"


def test_batch_may_be_larger_than_a_single_request(client: TestClient) -> None:
    # ~100 KB: over the 64 KB single-request limit, under the 4 MB batch limit.
    items = [item(ON_POLITICS[i % len(ON_POLITICS)] + " " + "ا" * 500) for i in range(90)]
    response = client.post("/v1/score/batch", json={"items": items}, headers=AUTH)
    assert response.status_code == 200
    assert all(r["ok"] for r in response.json()["results"])
