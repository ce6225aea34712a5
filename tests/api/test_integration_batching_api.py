"""Coral, Perspective and Akismet comments that arrive together share model calls, as /v1/score's do,
and each is answered and audited as if it had come alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.api.integrations.akismet import comment_id_for, site_of
from serving.api.integrations.signatures import sign_coral
from tests.api.conftest import API_KEY, MakeClient
from tests.api.test_score_batching_api import TEXTS, batch_calls

pytestmark = pytest.mark.api

SECRET = "coral-secret"
STAFF = 3  # this comment's author is Coral staff: a reject becomes a review, batched or not


def coral(n: int, text: str) -> dict[str, Any]:
    body = {
        "action": "NEW",
        "comment": {"id": f"coral-{n}", "body": f"<p>{text}</p>", "parentID": None},
        "author": {"id": f"user-{n}", "role": "STAFF" if n == STAFF else "COMMENTER"},
        "story": {"id": "story-9", "url": "https://news.example/story-9"},
        "site": {"id": "site-1"},
        "tenantID": "tenant-1",
        "tenantDomain": "comments.news.example",
    }
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"X-Coral-Signature": sign_coral(raw, [SECRET.encode()]), "Content-Type": "application/json"}
    return {"method": "POST", "url": "/v1/integrations/coral/moderate", "content": raw, "headers": headers}


def perspective(n: int, text: str) -> dict[str, Any]:
    body = {
        "comment": {"text": text},
        "requestedAttributes": {"TOXICITY": {}, "SPAM": {}, "OFF_TOPIC": {}},
        "clientToken": f"comment:persp-{n}",
    }
    return {"method": "POST", "url": f"/v1alpha1/comments:analyze?key={API_KEY}", "json": body}


def akismet(n: int, text: str) -> dict[str, Any]:
    form = {
        "api_key": API_KEY,
        "blog": "https://www.news.example",
        "user_ip": "203.0.113.9",
        "comment_type": "comment",
        "comment_author": f"reader-{n}",
        "comment_content": text,
    }
    return {"method": "POST", "url": "/1.1/comment-check", "data": form}


def concurrently(client: TestClient, calls: list[dict[str, Any]]) -> list[httpx.Response]:
    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://raqib") as http:
            return list(await asyncio.gather(*(http.request(**call) for call in calls)))

    assert client.portal is not None
    return client.portal.call(send)


def answer(response: httpx.Response) -> Any:
    """What the caller reads: Coral's and Perspective's JSON, Akismet's text and its verdict header."""
    assert response.status_code in (200, 204), response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.status_code, response.text, response.headers.get("x-akismet-pro-tip")


def close(got: Any, expected: Any) -> bool:
    """Equal, but for scores, which a batched call may round differently (float32, below 1e-5)."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(close(got[k], expected[k]) for k in got)
    if isinstance(got, list | tuple) and isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(close(a, b) for a, b in zip(got, expected, strict=True))
    if isinstance(got, float) and isinstance(expected, float):
        return abs(got - expected) <= 1e-5
    return bool(got == expected)


@pytest.mark.parametrize("call", [coral, perspective, akismet], ids=["coral", "perspective", "akismet"])
def test_integration_comments_share_model_calls_and_are_answered_as_alone(
    make_client: MakeClient, call: Callable[[int, str], dict[str, Any]]
) -> None:
    settings = {"coral_secrets": SECRET, "coral_timeout_ms": 30_000}
    batched = make_client(score_batch_max=16, **settings)
    alone = make_client(score_batch_max=1, **settings)
    calls = [call(n, text) for n, text in enumerate(TEXTS)]
    answers = concurrently(batched, calls)
    model_calls, comments = batch_calls(batched)
    assert comments == len(TEXTS)
    assert model_calls < len(TEXTS), "no two of the concurrent comments were scored together"
    for sent, got in zip(calls, answers, strict=True):
        expected = answer(alone.request(**sent))
        assert close(answer(got), expected), (answer(got), expected)
    store = batched.app.state.service.stores.current  # type: ignore[attr-defined]
    for n, text in enumerate(TEXTS):
        assert len(store.audit_for(*audited_as[call.__name__](n, text))) == 1, "audited once"


audited_as: dict[str, Callable[[int, str], tuple[str, str | None]]] = {
    "coral": lambda n, _text: (f"coral-{n}", "site-1"),
    "perspective": lambda n, _text: (f"persp-{n}", None),
    "akismet": lambda _n, text: (
        comment_id_for(site_of("https://www.news.example"), text),
        site_of("https://www.news.example"),
    ),
}
