"""Perspective-compatible comments:analyze and comments:suggestscore (what Coral calls for toxicity)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api.integrations.perspective import story_url
from serving.store.store import Store
from tests.api.conftest import API_KEY, AUTH, MakeClient
from tests.conftest import ABUSIVE, ON_POLITICS, ON_SPORT, POLITICS_BODY, POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api

ANALYZE = f"/v1alpha1/comments:analyze?key={API_KEY}"
SUGGEST = f"/v1alpha1/comments:suggestscore?key={API_KEY}"
ALL = {"TOXICITY": {}, "SPAM": {}, "OFF_TOPIC": {}}


def analyze(client: TestClient, text: str, **extra: Any) -> dict:
    body = {"comment": {"text": text}, "requestedAttributes": ALL, **extra}
    response = client.post(ANALYZE, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def rows(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() or 0)


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current
    assert store is not None
    return store


def test_arabic_abuse_scores_high_toxicity_in_perspectives_shape(client: TestClient) -> None:
    text = ABUSIVE[0]
    result = analyze(client, text, languages=["ar"], clientToken="tok-1")
    assert set(result) == {"attributeScores", "languages", "detectedLanguages", "clientToken"}
    assert result["clientToken"] == "tok-1" and result["languages"] == ["ar"]
    assert result["detectedLanguages"] == ["ar"]
    assert set(result["attributeScores"]) == {"TOXICITY", "SPAM", "OFF_TOPIC"}
    toxicity = result["attributeScores"]["TOXICITY"]
    assert toxicity["summaryScore"]["type"] == "PROBABILITY"
    assert toxicity["summaryScore"]["value"] > 0.8
    assert result["attributeScores"]["SPAM"]["summaryScore"]["value"] < 0.2
    assert toxicity["spanScores"] == [
        {
            "begin": 0,
            "end": len(text),
            "score": {"value": toxicity["summaryScore"]["value"], "type": "PROBABILITY"},
        }
    ]


def test_span_annotations_point_inside_the_text(client: TestClient) -> None:
    text = SPAM[0]
    result = analyze(client, text, spanAnnotations=True)
    spans = result["attributeScores"]["SPAM"]["spanScores"]
    assert spans and all(0 <= s["begin"] < s["end"] <= len(text) for s in spans)
    assert any("0551234567" in text[s["begin"] : s["end"]] for s in spans)
    assert all(s["score"]["type"] == "PROBABILITY" and 0 <= s["score"]["value"] <= 1 for s in spans)
    assert "clientToken" not in result


def test_context_entries_are_the_article(client: TestClient) -> None:
    context = {"entries": [{"text": POLITICS_TITLE}, {"text": POLITICS_BODY}]}
    off = analyze(client, ON_SPORT[0], context=context)["attributeScores"]["OFF_TOPIC"]["summaryScore"][
        "value"
    ]
    alone = analyze(client, ON_SPORT[0])["attributeScores"]["OFF_TOPIC"]["summaryScore"]["value"]
    assert off > 0.8 > alone


def test_score_threshold_leaves_low_attributes_out(client: TestClient) -> None:
    body = {
        "comment": {"text": SPAM[0]},
        "requestedAttributes": {"SPAM": {"scoreThreshold": 0.5}, "TOXICITY": {"scoreThreshold": 0.5}},
    }
    assert set(client.post(ANALYZE, json=body).json()["attributeScores"]) == {"SPAM"}


def test_unsupported_attribute_is_perspectives_400(client: TestClient) -> None:
    body = {"comment": {"text": "نص"}, "requestedAttributes": {"TOXICITY": {}, "SEVERE_TOXICITY": {}}}
    response = client.post(ANALYZE, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message", "status"}
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert "SEVERE_TOXICITY" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"comment": {"text": ""}, "requestedAttributes": ALL},
        {"comment": {"text": "x"}, "requestedAttributes": {}},
        {"requestedAttributes": ALL},
    ],
)
def test_bad_requests_are_perspective_errors(client: TestClient, body: dict) -> None:
    response = client.post(ANALYZE, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    malformed = client.post(ANALYZE, content=b"{nope", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == 400


def test_key_goes_in_the_query(client: TestClient, make_client: MakeClient) -> None:
    body = {"comment": {"text": "نص"}, "requestedAttributes": ALL}
    missing = client.post("/v1alpha1/comments:analyze", json=body)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    wrong = client.post("/v1alpha1/comments:analyze?key=nope", json=body)
    assert wrong.status_code == 400 and "API key not valid" in wrong.json()["error"]["message"]
    assert (
        client.post("/v1alpha1/comments:analyze", json=body, headers={"X-Goog-Api-Key": API_KEY}).status_code
        == 200
    )
    open_client = make_client(api_keys=[])
    assert open_client.post("/v1alpha1/comments:analyze", json=body).status_code == 200


def test_do_not_store_writes_nothing(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    store = store_of(client)
    secret = "تعليق لا يجوز حفظه 0551234567 واتساب"
    before = rows(store, "audit")
    analyze(client, secret, doNotStore=True)
    assert rows(store, "audit") == before
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit WHERE text = ?", (secret,)).scalar() == 0
    assert secret not in caplog.text
    analyze(client, secret)  # without doNotStore the decision is audited
    assert rows(store, "audit") == before + 1
    assert store.pending()[0].source == "perspective"


def test_suggestscore_records_the_moderators_verdict(client: TestClient) -> None:
    store = store_of(client)

    def suggest(text: str, **scores: float) -> dict:
        body = {
            "comment": {"text": text},
            "attributeScores": {name: {"summaryScore": {"value": v}} for name, v in scores.items()},
            "communityId": "Coral:tenant-1",
            "clientToken": f"t-{len(text)}",
        }
        response = client.post(SUGGEST + "&site=news", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    assert suggest(ABUSIVE[1], TOXICITY=1) == {"clientToken": f"t-{len(ABUSIVE[1])}"}
    suggest(SPAM[1], TOXICITY=0, SPAM=1)
    suggest(ON_POLITICS[1], TOXICITY=0)
    labels = {f.text: f.label for f in store.feedback_since()}
    assert labels == {ABUSIVE[1]: "abusive", SPAM[1]: "spam", ON_POLITICS[1]: "on_topic"}
    assert {f.site for f in store.feedback_since()} == {"news"}


def test_analyze_and_suggestscore_of_one_comment_join(client: TestClient) -> None:
    store = store_of(client)
    analyze(client, SPAM[2])
    assert len(store.pending()) == 1
    body = {"comment": {"text": SPAM[2]}, "attributeScores": {"TOXICITY": {"summaryScore": {"value": 0}}}}
    assert client.post(SUGGEST, json=body).status_code == 200
    assert store.pending() == []


def test_suggestscore_refuses_unsupported_attributes(client: TestClient) -> None:
    body = {"comment": {"text": "x"}, "attributeScores": {"INSULT": {"summaryScore": {"value": 1}}}}
    response = client.post(SUGGEST, json=body)
    assert response.status_code == 400 and "INSULT" in response.json()["error"]["message"]


# --- Coral's bodies (coralproject/talk, services/perspective/perspective.ts, formatBody) -----------

STORY = "https://www.news.example/politics/a-7"


def coral_context(comment_id: str, parent_id: str | None = None, story: str = STORY) -> dict:
    """Coral's one context entry: JSON.stringify of the story URL (with ?commentID=) and the ids."""
    metadata: dict[str, Any] = {"url": f"{story}?commentID={comment_id}", "Coral_comment_id": comment_id}
    if parent_id is not None:  # JSON.stringify leaves out an undefined parent id
        metadata["reply_to_id_Coral_comment_id"] = parent_id
    return {"entries": [{"text": json.dumps(metadata)}]}


def coral_suggestion(text: str, comment_id: str, status: str, parent_id: str | None = None) -> dict:
    """The suggestscore body Coral builds when a moderator approves or rejects a comment."""
    return {
        "comment": {"text": text},
        "context": coral_context(comment_id, parent_id),
        "attributeScores": {"TOXICITY": {"summaryScore": {"value": 0 if status == "APPROVED" else 1}}},
        "languages": ["en"],
        "communityId": "Coral:https://talk.news.example/",
        "clientToken": f"comment:{comment_id}",
    }


def put_politics_article(client: TestClient) -> None:
    article = {"title": POLITICS_TITLE, "text": POLITICS_BODY, "url": "https://news.example/politics/a-7"}
    assert client.put("/v1/articles/a-7", headers=AUTH, json=article).status_code in (200, 201)


def test_coral_suggestscore_is_recorded_under_coral_comment_id(client: TestClient) -> None:
    store = store_of(client)
    put_politics_article(client)
    body = coral_suggestion(SPAM[1], "c-2f9a", "REJECTED", parent_id="c-1000")
    response = client.post(SUGGEST + "&site=news", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"clientToken": "comment:c-2f9a"}
    [feedback] = store.feedback_since()
    assert feedback.comment_id == "c-2f9a" and feedback.site == "news"
    # The JSON entry is metadata: no article text made of it; its URL (less commentID) found the story.
    assert feedback.article_text is None
    assert feedback.article_id == "a-7"
    assert feedback.label == "abusive" and feedback.text == SPAM[1]  # Coral's 1 on TOXICITY, as before
    [exported] = list(store.export_labels())
    assert exported["article_text"] == POLITICS_BODY and "Coral_comment_id" not in json.dumps(exported)


def test_coral_approval_is_on_topic_and_joins_the_score_of_the_same_comment(client: TestClient) -> None:
    store = store_of(client)
    analyze(client, ON_POLITICS[1], clientToken="comment:abc")
    [audited] = store.pending()
    assert audited.comment_id == "abc"
    response = client.post(SUGGEST, json=coral_suggestion(ON_POLITICS[1], "abc", "APPROVED"))
    assert response.status_code == 200, response.text
    assert store.pending() == []  # the verdict answered the decision: same comment id
    assert [(f.comment_id, f.label) for f in store.feedback_since()] == [("abc", "on_topic")]


def test_analyze_takes_the_comment_id_from_corals_client_token_only(client: TestClient) -> None:
    store = store_of(client)
    result = analyze(client, ABUSIVE[2], clientToken="comment:abc")
    assert result["clientToken"] == "comment:abc"
    analyze(client, ABUSIVE[3], clientToken="tok-1")  # not Coral's form: the text's digest, as before
    ids = {record.text: record.comment_id for record in store.pending()}
    assert ids[ABUSIVE[2]] == "abc"
    assert ids[ABUSIVE[3]].startswith("text:")


def test_coral_context_url_finds_the_stored_article_for_analyze(client: TestClient) -> None:
    put_politics_article(client)
    scored = analyze(client, ON_SPORT[0], context=coral_context("c-9"))
    assert scored["attributeScores"]["OFF_TOPIC"]["summaryScore"]["value"] > 0.8
    [audited] = store_of(client).pending()
    assert (audited.comment_id, audited.article_id) == ("c-9", "a-7")


def test_plain_text_entries_stay_article_text_beside_coral_metadata(client: TestClient) -> None:
    store = store_of(client)
    context = coral_context("c-5")
    context["entries"].append({"text": POLITICS_BODY})
    body = {**coral_suggestion(ON_POLITICS[0], "c-5", "APPROVED"), "context": context}
    body.pop("clientToken")  # the id then comes from the context's Coral_comment_id
    assert client.post(SUGGEST, json=body).status_code == 200
    [feedback] = store.feedback_since()
    assert (feedback.comment_id, feedback.article_text) == ("c-5", POLITICS_BODY)


def test_text_that_only_looks_like_json_is_article_text(client: TestClient) -> None:
    store = store_of(client)
    entries = [{"text": "{not json"}, {"text": '["a", "list"]'}]
    analyze(client, ON_POLITICS[2], context={"entries": entries})
    body = {
        "comment": {"text": ON_POLITICS[2]},
        "context": {"entries": entries},
        "attributeScores": {"TOXICITY": {"summaryScore": {"value": 0}}},
    }
    assert client.post(SUGGEST, json=body).status_code == 200
    [feedback] = store.feedback_since()
    assert feedback.article_text == '{not json\n["a", "list"]'
    assert feedback.comment_id.startswith("text:") and store.pending() == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://news.example/a-7?commentID=c-1", "https://news.example/a-7"),
        ("https://news.example/a-7?page=2&commentID=c-1#top", "https://news.example/a-7?page=2#top"),
        ("https://news.example/a-7?page=2", "https://news.example/a-7?page=2"),
        ("http://[", "http://["),
    ],
)
def test_story_url_drops_corals_comment_parameter(url: str, expected: str) -> None:
    assert story_url(url) == expected
