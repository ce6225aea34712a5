"""POST /v1/score: response shape, policy (sites, trusted authors, observe mode), spans, the seed case."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, MakeClient
from tests.conftest import (
    ABUSIVE,
    ON_POLITICS,
    POLITICS_BODY,
    POLITICS_TITLE,
    SPAM,
    SPORT_BODY,
    SPORT_TITLE,
)

pytestmark = pytest.mark.api

SPAM_TEXT = SPAM[0]  # WhatsApp number and "guaranteed profit": the tiny model rejects it at 0.8
ACTIONS = {"approve", "review", "reject"}


def score(
    client: TestClient,
    text: str,
    *,
    title: str | None = POLITICS_TITLE,
    body: str | None = POLITICS_BODY,
    **extra: object,
) -> dict:
    payload: dict = {
        "comment": {"id": "c-1", "text": text, **extra.pop("comment", {})},
        "article": {"id": "a-1", "title": title, "text": body},
        **extra,
    }
    response = client.post("/v1/score", json=payload, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_score_response_has_the_documented_shape(client: TestClient) -> None:
    result = score(client, ON_POLITICS[0])
    assert set(result) == {"comment_id", "label", "scores", "action", "decision", "reasons", "spans", "model"}
    assert result["comment_id"] == "c-1"
    assert set(result["scores"]) == {"on_topic", "off_topic", "spam", "abusive"}
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["label"] == max(result["scores"], key=result["scores"].get)
    assert result["action"] in ACTIONS
    assert set(result["decision"]) == {"action", "label", "mode"}
    assert result["decision"]["mode"] == "enforce"
    assert result["model"] == {"name": "raqib-moderator", "version": "0-test"}
    for reason in result["reasons"]:
        assert set(reason) == {"kind", "detail", "weight"}


def test_on_topic_comment_is_approved_and_spam_rejected(client: TestClient) -> None:
    on_topic = score(client, ON_POLITICS[0])
    assert (on_topic["label"], on_topic["action"]) == ("on_topic", "approve")
    assert on_topic["decision"]["label"] is None
    spam = score(client, SPAM_TEXT)
    assert (spam["label"], spam["action"]) == ("spam", "reject")
    assert spam["decision"] == {"action": "reject", "label": "spam", "mode": "enforce"}
    abusive = score(client, ABUSIVE[0])
    assert abusive["label"] == "abusive" and abusive["action"] != "approve"


def test_numeric_ids_are_echoed_as_strings_and_article_is_optional(client: TestClient) -> None:
    response = client.post("/v1/score", json={"comment": {"id": 42, "text": SPAM_TEXT}}, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["comment_id"] == "42"


def test_unknown_fields_are_ignored(client: TestClient) -> None:
    response = client.post(
        "/v1/score",
        headers=AUTH,
        json={
            "comment": {"text": ON_POLITICS[1], "likes": 3},
            "article": {"title": POLITICS_TITLE},
            "cms_version": "7.1",
        },
    )
    assert response.status_code == 200


def test_seed_comment_in_english_under_arabic_politics_is_not_approved(client: TestClient) -> None:
    result = score(client, "Please send me all your news")
    assert result["action"] != "approve", result
    assert result["label"] != "on_topic"


def test_observe_mode_approves_but_reports_what_it_would_have_done(make_client: MakeClient) -> None:
    client = make_client(sites={"watch": {"mode": "observe"}})
    result = score(client, SPAM_TEXT, site="watch")
    assert result["action"] == "approve"
    assert result["decision"] == {"action": "reject", "label": "spam", "mode": "observe"}
    # Another site, or none, is still enforced.
    assert score(client, SPAM_TEXT)["action"] == "reject"


def test_site_threshold_override_changes_the_action(make_client: MakeClient) -> None:
    client = make_client(
        sites={
            "lenient": {"reject_at": {"spam": 0.999}, "review_at": {"spam": 0.999}},
            "strict": {"reject_at": {"off_topic": 0.05}},
        }
    )
    default = score(client, SPAM_TEXT)
    lenient = score(client, SPAM_TEXT, site="lenient")
    assert default["action"] == "reject"
    # Above every threshold of the lenient site, yet still most likely spam: held for review.
    assert lenient["action"] == "review"
    assert lenient["scores"] == default["scores"]
    # An on-topic sport comment under a politics article is off_topic enough for the strict site.
    sport = score(client, "الهلال بطل الدوري هذا الموسم", site="strict")
    assert sport["scores"]["off_topic"] >= 0.05
    assert sport["decision"]["label"] is not None and sport["action"] == "reject"


def test_trusted_author_is_never_rejected(make_client: MakeClient) -> None:
    client = make_client(sites={"news": {"trusted_authors": ["editor-1"]}})
    trusted = score(client, SPAM_TEXT, site="news", comment={"author": "editor-1"})
    stranger = score(client, SPAM_TEXT, site="news", comment={"author": "someone"})
    assert stranger["action"] == "reject"
    assert trusted["action"] == "review"
    assert trusted["decision"]["action"] == "review" and trusted["decision"]["label"] == "spam"
    assert any(reason["kind"] == "policy" for reason in trusted["reasons"])


def test_trusted_author_is_per_site(make_client: MakeClient) -> None:
    client = make_client(sites={"news": {"trusted_authors": ["editor-1"]}})
    elsewhere = score(client, SPAM_TEXT, site="other", comment={"author": "editor-1"})
    assert elsewhere["action"] == "reject"


@pytest.mark.parametrize(
    "text",
    [
        # Diacritics on every letter, tatweel stretching "واتساب", Arabic-Indic digits for the phone.
        "لِلتَّوَاصُلِ واتــــــساب ٠٥٥١٢٣٤٥٦٧ رِبْحٌ مَضْمُونٌ يَوْمِيًّا",
        # Mixed script with a phone in Arabic-Indic digits in the middle.
        "check out my channel واتساب ٠٥٥١٢٣٤٥٦٧ subscribe الآن",
        # Zero-width joiners and Persian digits.
        "للتواصل وا\u200cتساب ۰۵۵۱۲۳۴۵۶۷ ربح مضمون",
    ],
)
def test_spans_point_into_the_original_text(client: TestClient, text: str) -> None:
    result = score(client, text)
    assert result["label"] == "spam"
    spans = result["spans"]
    assert spans, "a rejected spam comment should highlight something"
    for span in spans:
        assert 0 <= span["begin"] < span["end"] <= len(text)
        assert text[span["begin"] : span["end"]].strip()
        assert 0.0 <= span["score"] <= 1.0
    phone = next(p for p in ("٠٥٥١٢٣٤٥٦٧", "۰۵۵۱۲۳۴۵۶۷") if p in text)
    assert any(phone in text[s["begin"] : s["end"]] for s in spans), spans


def test_sport_comment_under_its_own_article_is_on_topic(client: TestClient) -> None:
    result = score(client, "المهاجم سجل هدفين رائعين في الشوط الثاني", title=SPORT_TITLE, body=SPORT_BODY)
    assert result["label"] == "on_topic"


def test_long_comment_is_scored_off_the_event_loop(client: TestClient) -> None:
    # Over the inline budget: scored in the threadpool, same answer shape.
    text = " ".join(ON_POLITICS * 40)[:5000]
    result = score(client, text)
    assert result["model"]["version"] == "0-test"
