"""Prometheus metrics per app, and the OpenAPI documentation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, MakeClient
from tests.conftest import ON_POLITICS, SPAM

pytestmark = pytest.mark.api


def test_metrics_count_requests_decisions_and_model(client: TestClient) -> None:
    client.post("/v1/score", json={"comment": {"text": ON_POLITICS[0]}}, headers=AUTH)
    client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH)
    client.post("/v1/score", json={"comment": {"text": ""}}, headers=AUTH)
    client.post("/v1/score", json={"comment": {"text": SPAM[0]}})
    client.get("/no/such/path/12345")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'raqib_requests_total{method="POST",route="/v1/score",status="200"} 2.0' in text
    assert 'raqib_requests_total{method="POST",route="/v1/score",status="422"} 1.0' in text
    assert 'raqib_requests_total{method="POST",route="/v1/score",status="401"} 1.0' in text
    # Unknown paths are lumped together: user-typed paths must not become label values.
    assert 'route="<unmatched>"' in text and "12345" not in text
    assert 'raqib_request_seconds_bucket{le="0.005",route="/v1/score"}' in text
    assert 'raqib_request_seconds_count{route="/v1/score"} 4.0' in text
    assert 'raqib_decisions_total{action="reject",label="spam"} 1.0' in text
    assert 'raqib_decisions_total{action="approve",label="on_topic"} 1.0' in text
    assert 'raqib_model_info{name="raqib-moderator",version="0-test"} 1.0' in text
    assert "raqib_model_loaded 1.0" in text


def test_observe_mode_counts_the_decided_action(make_client: MakeClient) -> None:
    client = make_client(sites={"watch": {"mode": "observe"}})
    client.post("/v1/score", json={"comment": {"text": SPAM[0]}, "site": "watch"}, headers=AUTH)
    assert 'raqib_decisions_total{action="reject",label="spam"} 1.0' in client.get("/metrics").text


def test_each_app_has_its_own_registry(make_client: MakeClient) -> None:
    first, second = make_client(), make_client()
    first.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH)
    assert 'raqib_decisions_total{action="reject",label="spam"} 1.0' in first.get("/metrics").text
    assert "raqib_decisions_total{" not in second.get("/metrics").text


def test_openapi_documents_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {
        "/v1/score",
        "/v1/score/batch",
        "/v1/model",
        "/v1/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(schema["paths"])
    score = schema["paths"]["/v1/score"]["post"]
    assert {"200", "401", "413", "422", "503"} <= set(score["responses"])
    assert "ErrorResponse" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200
