"""/v1/score requests that arrive together are scored in one model call, each answered as if alone."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, MakeClient

pytestmark = pytest.mark.api

ARTICLE = {"id": "story-9", "title": "الحكومة تعلن موازنة جديدة", "text": "أعلنت الحكومة موازنة العام المقبل"}
TEXTS = (
    "الموازنة لا تكفي الرواتب",
    "واتساب 0551234567 ربح مضمون",
    "مبروك للنادي الفوز بالدوري",
    "يا حمار اسكت",
    "متى تصرف الرواتب؟",
    "The budget is a joke",
    "شكرا على الخبر",
    "الحكومة لا تعرف ماذا تفعل",
)


def requests() -> list[dict[str, Any]]:
    return [
        {"comment": {"id": f"c-{n}", "text": text}, "article": ARTICLE, "site": "news"}
        for n, text in enumerate(TEXTS)
    ]


def concurrently(client: TestClient, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Every body POSTed at once, on the app's own event loop (the TestClient's portal)."""

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://raqib") as http:
            return list(await asyncio.gather(*(http.post("/v1/score", json=b, headers=AUTH) for b in bodies)))

    assert client.portal is not None
    return client.portal.call(send)


def batch_calls(client: TestClient) -> tuple[float, float]:
    """(model calls, comments) from the batch-size histogram on /metrics."""
    text = client.get("/metrics").text
    count = re.search(r"^raqib_score_batch_size_count ([0-9.e+]+)$", text, re.M)
    total = re.search(r"^raqib_score_batch_size_sum ([0-9.e+]+)$", text, re.M)
    assert count and total, "the batch-size histogram is missing from /metrics"
    return float(count.group(1)), float(total.group(1))


def test_concurrent_requests_share_model_calls_and_each_answer_equals_the_answer_alone(
    make_client: MakeClient,
) -> None:
    batched = make_client(score_batch_max=16)
    alone = make_client(score_batch_max=1)
    answers = concurrently(batched, requests())
    calls, comments = batch_calls(batched)
    assert comments == len(TEXTS)
    assert calls < len(TEXTS), "no two of the concurrent requests were scored together"
    for body, answer in zip(requests(), answers, strict=True):
        assert answer.status_code == 200, answer.text
        expected = alone.post("/v1/score", json=body, headers=AUTH).json()
        got = answer.json()
        assert got["comment_id"] == body["comment"]["id"]
        for field in ("label", "action", "decision", "reasons", "spans", "model"):
            assert got[field] == expected[field], field
        assert got["scores"] == pytest.approx(expected["scores"], abs=1e-5)


def test_every_batched_decision_is_in_the_audit_log_when_its_answer_arrives(make_client: MakeClient) -> None:
    client = make_client(score_batch_max=16)
    answers = concurrently(client, requests())
    store = client.app.state.service.stores.current  # type: ignore[attr-defined]
    for body, answer in zip(requests(), answers, strict=True):
        (record,) = store.audit_for(body["comment"]["id"], "news")
        assert (record.label, record.action) == (answer.json()["label"], answer.json()["action"])


def test_each_site_policy_applies_to_its_own_comment_inside_a_shared_batch(make_client: MakeClient) -> None:
    # "strict" reviews anything with the faintest score for a problem label; "calm" only observes.
    sites = {
        "strict": {"review_at": {"spam": 0.001, "abusive": 0.001, "off_topic": 0.001}},
        "calm": {"mode": "observe"},
    }
    batched = make_client(score_batch_max=16, sites=sites)
    alone = make_client(score_batch_max=1, sites=sites)
    bodies = [
        {**body, "site": site, "comment": {**body["comment"], "id": f"{site}-{n}"}}
        for n, body in enumerate(requests())
        for site in ("news", "strict", "calm")
    ]
    answers = [a.json() for a in concurrently(batched, bodies)]
    assert batch_calls(batched)[0] < len(bodies)
    by_site: dict[str, list[str]] = {}
    for body, answer in zip(bodies, answers, strict=True):
        expected = alone.post("/v1/score", json=body, headers=AUTH).json()
        assert (answer["action"], answer["decision"]) == (expected["action"], expected["decision"])
        by_site.setdefault(body["site"], []).append(answer["decision"]["action"])
    # the policies really differ on these comments, so a mixed-up policy would have shown above
    assert by_site["strict"] != by_site["news"]
    assert all(
        answer["action"] == "approve"
        for body, answer in zip(bodies, answers, strict=True)
        if body["site"] == "calm"
    )


def scoring_threads(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that call the serving model's `score` from now on."""
    model = client.app.state.service.models.current.model  # type: ignore[attr-defined]
    real_score = model.score
    threads: list[str] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(model, "score", spy)
    return threads


def test_a_long_comment_alone_is_scored_off_the_event_loop_as_without_batching(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over INLINE_SCORING_BUDGET (1000) but within the batch's inline budget (4000): without
    # batching it went to the threadpool, and batching must not move it onto the event loop.
    client = make_client(score_batch_max=16)
    threads = scoring_threads(client, monkeypatch)
    long_text = " ".join(TEXTS * 40)[:2000]
    for text in ("تعليق قصير عن الموازنة", long_text):
        answer = client.post("/v1/score", json={"comment": {"id": "c-len", "text": text}}, headers=AUTH)
        assert answer.status_code == 200, answer.text
    short_thread, long_thread = threads
    assert not short_thread.startswith("raqib-scorer"), "a short lone comment is scored on the loop"
    assert long_thread.startswith("raqib-scorer"), f"the long comment was scored on {long_thread}"
