"""/v1/score's lean request path keeps its behaviour: checks in order, one answer shape, audited first."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from serving.api.middleware import RequestIds
from serving.services.schemas import ScoreResponse
from tests.api.conftest import AUTH, MakeClient

pytestmark = pytest.mark.api

COMMENT = {"comment": {"id": "c-lean", "text": "تعليق عن الحكومة والمحادثات"}, "site": "news"}


def test_the_answer_is_a_score_response_as_json(client: TestClient) -> None:
    response = client.post("/v1/score", json=COMMENT, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = ScoreResponse.model_validate_json(response.content)
    assert answer.comment_id == "c-lean"
    # Exactly the model's JSON: what FastAPI's response_model would have written.
    assert response.content == answer.model_dump_json().encode("utf-8")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_the_key_is_checked_before_the_body(client: TestClient) -> None:
    refused = client.post("/v1/score", json={"comment": {}}, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    missing = client.post("/v1/score", json={"comment": {}})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    invalid = client.post("/v1/score", json={"comment": {}}, headers=AUTH)
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "comment.text"


def test_the_decision_is_in_the_audit_log_when_the_answer_arrives(client: TestClient) -> None:
    store = client.app.state.service.stores.current  # type: ignore[attr-defined]
    for n in range(3):
        answer = client.post(
            "/v1/score", json={**COMMENT, "comment": {"id": f"c-{n}", "text": "نص"}}, headers=AUTH
        )
        (record,) = store.audit_for(f"c-{n}", "news")
        assert (record.label, record.action) == (answer.json()["label"], answer.json()["action"])


def test_every_answer_is_counted_and_logged_once(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    with caplog.at_level(logging.INFO, logger="raqib.access"):
        for _ in range(3):
            assert client.post("/v1/score", json=COMMENT, headers=AUTH).status_code == 200
        assert client.post("/v1/score", json=COMMENT).status_code == 401
    access = [r for r in caplog.records if r.name == "raqib.access"]
    assert [(r.method, r.path, r.status) for r in access] == [  # type: ignore[attr-defined]
        *[("POST", "/v1/score", 200)] * 3,
        ("POST", "/v1/score", 401),
    ]
    assert "POST /v1/score 200" in access[0].getMessage()
    metrics = client.get("/metrics").text
    assert 'raqib_requests_total{method="POST",route="/v1/score",status="200"} 3.0' in metrics
    assert 'raqib_requests_total{method="POST",route="/v1/score",status="401"} 1.0' in metrics
    assert 'raqib_request_seconds_count{route="/v1/score"} 4.0' in metrics


def test_request_ids_are_unique_and_a_new_process_draws_new_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = RequestIds()
    drawn = [ids.next() for _ in range(1000)]
    assert len(set(drawn)) == 1000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn)
    monkeypatch.setattr("serving.api.middleware.os.getpid", lambda: -2)
    forked = ids.next()
    assert forked[:16] != drawn[0][:16] and forked[16:] == "0" * 16


@pytest.mark.parametrize("enabled", [False, True])
def test_opentelemetry_spans_only_when_switched_on(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    # A process with an OpenTelemetry SDK configured (what `opentelemetry-instrument` sets up); the
    # SDK is a training dependency (MLflow), so a serving-only install skips this.
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    client = make_client(opentelemetry=enabled)
    assert client.post("/v1/score", json=COMMENT, headers=AUTH).status_code == 200
    spans = [span.name for span in exporter.get_finished_spans()]
    if enabled:
        assert any("/v1/score" in name for name in spans), spans
    else:
        assert spans == []
