"""Per-key rate limits: a token bucket per key (and per site with its own limit), 429 with Retry-After.

Time is a fake clock the tests move forward; nothing here sleeps or measures how long anything took.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api.integrations.signatures import sign_coral, sign_raqib
from serving.runtime.ratelimit import RateLimiter, caller_id
from serving.settings import RateLimit
from tests.api.conftest import API_KEY, AUTH, OTHER_API_KEY, MakeClient
from tests.conftest import ON_POLITICS, SPAM

pytestmark = pytest.mark.api

COMMENT = {"comment": {"text": ON_POLITICS[0]}}


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limited_client(make_client: MakeClient, **overrides: Any) -> tuple[TestClient, FakeClock]:
    """A started client whose rate limiter reads a fake clock."""
    client = make_client(**overrides)
    clock = FakeClock()
    client.app.state.service.rate_limiter.clock = clock  # type: ignore[attr-defined]
    return client, clock


def score(client: TestClient, headers: dict[str, str] = AUTH, site: str | None = None) -> Any:
    return client.post("/v1/score", json={**COMMENT, "site": site}, headers=headers)


def assert_rate_limited(response: Any, retry_after: int, limit: int) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    error: dict[str, Any] = response.json()["error"]
    assert response.json() == {"error": {"code": "rate_limited", "message": error["message"], "field": None}}
    assert response.headers["retry-after"] == str(retry_after)
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    return error


def test_a_key_gets_its_burst_then_429_with_retry_after(make_client: MakeClient) -> None:
    client, _ = limited_client(make_client, rate_limit={"per_second": 1, "burst": 3})
    for remaining in ("2", "1", "0"):
        response = score(client)
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "3"
        assert response.headers["ratelimit-remaining"] == remaining
    error = assert_rate_limited(score(client), retry_after=1, limit=3)
    assert "retry in 1 s" in error["message"]
    assert API_KEY not in error["message"]
    metrics = client.get("/metrics").text
    assert 'raqib_rate_limited_total{policy="default",route="/v1/score"} 1.0' in metrics
    assert 'raqib_requests_total{method="POST",route="/v1/score",status="429"} 1.0' in metrics


def test_the_bucket_refills_as_time_passes(make_client: MakeClient) -> None:
    client, clock = limited_client(make_client, rate_limit={"per_second": 0.5, "burst": 2})
    assert score(client).status_code == 200
    assert score(client).status_code == 200
    assert_rate_limited(score(client), retry_after=2, limit=2)  # one token takes 2 s at 0.5/s
    clock.advance(1.0)
    assert_rate_limited(score(client), retry_after=1, limit=2)  # half a token back
    clock.advance(1.0)
    assert score(client).status_code == 200
    assert_rate_limited(score(client), retry_after=2, limit=2)
    clock.advance(3600)  # a long pause refills up to the burst, not beyond
    assert [score(client).status_code for _ in range(3)] == [200, 200, 429]


def test_keys_are_limited_independently(make_client: MakeClient) -> None:
    client, _ = limited_client(
        make_client, api_keys=[API_KEY, OTHER_API_KEY], rate_limit={"per_second": 1, "burst": 1}
    )
    other = {"Authorization": f"Bearer {OTHER_API_KEY}"}
    assert score(client).status_code == 200
    assert score(client).status_code == 429
    assert score(client, other).status_code == 200
    assert score(client, other).status_code == 429


def test_a_site_with_its_own_limit_has_its_own_bucket(make_client: MakeClient) -> None:
    client, _ = limited_client(
        make_client,
        rate_limit={"per_second": 1, "burst": 2},
        sites={
            "small": {"rate_limit": {"per_second": 1, "burst": 1}},
            "big": {"rate_limit": {"per_second": 1, "burst": 5}},
            "policy_only": {"mode": "observe"},
        },
    )
    assert score(client, site="small").status_code == 200
    error = assert_rate_limited(score(client, site="small"), retry_after=1, limit=1)
    assert "'small'" in error["message"]
    # Sites without a limit of their own, and no site at all, share the key's default bucket.
    assert score(client, site="policy_only").status_code == 200
    assert score(client, site="not-configured").status_code == 200
    assert_rate_limited(score(client), retry_after=1, limit=2)
    # A site may also allow more than the default.
    assert [score(client, site="big").status_code for _ in range(6)] == [200] * 5 + [429]
    metrics = client.get("/metrics").text
    assert 'raqib_rate_limited_total{policy="small",route="/v1/score"} 1.0' in metrics
    assert 'raqib_rate_limited_total{policy="big",route="/v1/score"} 1.0' in metrics


def test_health_readiness_and_metrics_are_never_limited(make_client: MakeClient) -> None:
    client, _ = limited_client(
        make_client, require_auth_for_health=True, rate_limit={"per_second": 1, "burst": 1}
    )
    assert score(client).status_code == 200
    assert score(client).status_code == 429
    for _ in range(5):
        for path in ("/healthz", "/readyz", "/metrics"):
            response = client.get(path, headers=AUTH)
            assert response.status_code == 200
            assert "ratelimit-limit" not in response.headers


@pytest.fixture
def spent_client(make_client: MakeClient) -> TestClient:
    """A client whose key has already spent its single token."""
    client, _ = limited_client(
        make_client,
        rate_limit={"per_second": 0.25, "burst": 1},
        coral_secrets=["coral-secret"],
        webhook_secret=["hook-secret"],
    )
    return client


def test_api_routes_refuse_once_the_key_is_spent(spent_client: TestClient) -> None:
    assert score(spent_client).status_code == 200
    for response in (
        spent_client.post("/v1/score/batch", json={"items": [COMMENT]}, headers=AUTH),
        spent_client.post("/v1/feedback", json={"comment_id": "c-1", "label": "spam"}, headers=AUTH),
        spent_client.put("/v1/articles/a-1", json={"title": "t"}, headers=AUTH),
        spent_client.get("/v1/articles/a-1", headers=AUTH),
        spent_client.get("/v1/model", headers=AUTH),
    ):
        assert_rate_limited(response, retry_after=4, limit=1)


def test_perspective_answers_429_in_its_own_shape(spent_client: TestClient) -> None:
    body = {"comment": {"text": SPAM[0]}, "requestedAttributes": {"SPAM": {}}}
    first = spent_client.post("/v1alpha1/comments:analyze", params={"key": API_KEY}, json=body)
    assert first.status_code == 200
    refused = spent_client.post("/v1alpha1/comments:analyze", params={"key": API_KEY}, json=body)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == 429
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert refused.headers["retry-after"] == "4"


def test_akismet_answers_429_as_plain_text(spent_client: TestClient) -> None:
    form = {"api_key": API_KEY, "blog": "https://news.example", "comment_content": SPAM[0]}
    assert spent_client.post("/1.1/comment-check", data=form).status_code == 200
    refused = spent_client.post("/1.1/comment-check", data=form)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/plain")
    assert "too many requests" in refused.text
    assert refused.headers["retry-after"] == "4"
    # A wrong key is not anybody's request to count: it is answered "invalid", as before.
    assert spent_client.post("/1.1/comment-check", data={**form, "api_key": "wrong"}).text == "invalid"


def test_signed_integrations_share_one_bucket_per_integration(spent_client: TestClient) -> None:
    def coral(payload: bytes) -> Any:
        signature = sign_coral(payload, [b"coral-secret"])
        return spent_client.post(
            "/v1/integrations/coral/moderate",
            content=payload,
            headers={"X-Coral-Signature": signature, "Content-Type": "application/json"},
        )

    def webhook(payload: bytes) -> Any:
        signature = sign_raqib(payload, b"hook-secret", int(time.time()))
        return spent_client.post(
            "/v1/webhooks/comments",
            content=payload,
            headers={"X-Raqib-Signature": signature, "Content-Type": "application/json"},
        )

    moderate = b'{"comment": {"id": "c-1", "body": "hello"}}'
    assert coral(moderate).status_code in (200, 204)
    assert_rate_limited(coral(moderate), retry_after=4, limit=1)
    # The webhook is another sender, with a bucket of its own; the API key's bucket is untouched.
    event = b'{"id": "evt-1", "type": "something.else", "data": {}}'
    assert webhook(event).status_code == 204
    assert_rate_limited(webhook(event), retry_after=4, limit=1)
    assert score(spent_client).status_code == 200


def test_a_disabled_limit_never_refuses(make_client: MakeClient) -> None:
    client, _ = limited_client(make_client, rate_limit={"enabled": False, "burst": 1})
    responses = [client.get("/v1/model", headers=AUTH) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert "ratelimit-limit" not in responses[-1].headers


def test_without_api_keys_there_is_no_key_to_limit(make_client: MakeClient) -> None:
    client, _ = limited_client(make_client, api_keys=[], rate_limit={"per_second": 1, "burst": 1})
    assert [client.get("/v1/model").status_code for _ in range(3)] == [200] * 3


def test_the_default_limit_is_generous_but_there(make_client: MakeClient) -> None:
    client, _ = limited_client(make_client)
    limit = RateLimit()
    assert limit.enabled and limit.burst >= 100 and limit.per_second >= 10
    statuses = [client.get("/v1/model", headers=AUTH).status_code for _ in range(limit.burst + 1)]
    assert statuses == [200] * limit.burst + [429]


# --- the limiter itself ---------------------------------------------------------------------------


def test_a_clock_stepping_back_does_not_drain_the_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(per_second=1, burst=2), clock=clock)
    assert limiter.take("k") is not None and limiter.take("k").allowed  # type: ignore[union-attr]
    clock.advance(-100)
    decision = limiter.take("k")
    assert decision is not None and not decision.allowed and decision.retry_after == 1


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(per_second=1000, burst=1), clock=clock)
    assert limiter.take("k").allowed  # type: ignore[union-attr]
    refused = limiter.take("k")
    assert refused is not None and not refused.allowed
    assert refused.retry_after == 1  # a millisecond away, but Retry-After counts whole seconds
    slow = RateLimiter(RateLimit(per_second=0.1, burst=1), clock=clock)
    slow.take("k")
    assert slow.take("k").retry_after == 10  # type: ignore[union-attr]


def test_buckets_are_named_by_a_digest_not_the_key() -> None:
    name = caller_id("s3cret-key")
    assert "s3cret" not in name
    assert name == "key:" + hashlib.sha256(b"s3cret-key").hexdigest()[:16]
    assert caller_id(b"s3cret-key") == name and caller_id("other-key") != name
