"""Bad input never yields a 5xx: every error is JSON {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import AUTH, MakeClient
from tests.conftest import POLITICS_TITLE, SPAM

pytestmark = pytest.mark.api

JSON = {**AUTH, "Content-Type": "application/json"}


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == code
    assert body["error"]["field"] == field
    assert body["error"]["message"]
    return body["error"]


def test_empty_text_is_422_with_field(client: TestClient) -> None:
    response = client.post("/v1/score", json={"comment": {"text": ""}}, headers=AUTH)
    assert_error(response, 422, "empty_text", "comment.text")


def test_too_long_text_is_422_with_field(make_client: MakeClient) -> None:
    client = make_client(max_text_chars=50)
    response = client.post("/v1/score", json={"comment": {"text": "ت" * 51}}, headers=AUTH)
    error = assert_error(response, 422, "text_too_long", "comment.text")
    assert "50" in error["message"]
    ok = client.post("/v1/score", json={"comment": {"text": "ت" * 50}}, headers=AUTH)
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"comment": {"text": 5}}, "invalid_type", "comment.text"),
        ({"comment": {"text": "ok", "id": [1]}}, "invalid_type", "comment.id"),
        ({"comment": {"text": "ok"}, "article": {"title": 7}}, "invalid_type", "article.title"),
        ({"comment": {"text": "ok"}, "site": {"a": 1}}, "invalid_type", "site"),
        ({"article": {"title": POLITICS_TITLE}}, "missing_field", "comment"),
        ({"comment": {}}, "missing_field", "comment.text"),
        ({"comment": "just a string"}, "invalid_type", "comment"),
        ({"comment": {"text": "\ud800 lone surrogate"}}, "invalid_unicode", "comment.text"),
        ([1, 2], "invalid_type", None),
    ],
)
def test_malformed_requests_are_422_with_dotted_field(
    client: TestClient, payload: object, code: str, field: str | None
) -> None:
    response = client.post("/v1/score", content=json.dumps(payload).encode(), headers=JSON)
    assert_error(response, 422, code, field)


@pytest.mark.parametrize(
    "body",
    [
        b'{"comment": {"text": "unterminated',
        b"{'comment': 1}",
        b"",
        b"\xff\xfe\x00garbage",
        b'{"comment": {"text": "\xd9\x85\xff"}}',  # a valid Arabic letter, then a byte that is never UTF-8
        b"[" * 5000,
    ],
)
def test_invalid_json_or_utf8_is_400(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/score", content=body, headers=JSON)
    if body == b"":
        assert_error(response, 422, "missing_field", None)  # no body at all: the request lacks fields
    else:
        assert_error(response, 400, "invalid_json")


def test_non_json_content_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/v1/score", content=b'{"comment": {"text": "x"}}', headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


def test_body_over_limit_is_413_by_content_length(client: TestClient) -> None:
    text = "ك" * 40_000  # 80 KB of UTF-8, over the 64 KB single-request limit
    response = client.post("/v1/score", json={"comment": {"text": text}}, headers=AUTH)
    error = assert_error(response, 413, "body_too_large")
    assert "65536" in error["message"]


def test_body_over_limit_is_413_when_streamed_without_length(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=1000)

    def chunks() -> Iterator[bytes]:
        yield b'{"comment": {"text": "'
        for _ in range(10):
            yield "ن".encode() * 100
        yield b'"}}'

    response = client.post("/v1/score", content=chunks(), headers=JSON)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "body_too_large")


def test_batch_body_over_its_limit_is_413(make_client: MakeClient) -> None:
    client = make_client(max_batch_body_bytes=5_000)
    items = [{"comment": {"text": SPAM[0]}}] * 100
    response = client.post("/v1/score/batch", json={"items": items}, headers=AUTH)
    assert_error(response, 413, "body_too_large")


def test_unknown_route_and_wrong_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing", headers=AUTH), 404, "not_found")
    assert_error(client.get("/v1/score", headers=AUTH), 405, "method_not_allowed")


@pytest.fixture
def crashing_client(make_client: MakeClient) -> TestClient:
    client = make_client()
    loaded = client.app.state.service.models.current  # type: ignore[attr-defined]

    def explode(items, thresholds=None, explain=True):  # type: ignore[no-untyped-def]
        raise ValueError(f"could not score {items[0].text!r}")

    loaded.model.score = explode
    return client


def test_unexpected_exception_is_500_with_request_id_and_no_text_in_logs(
    crashing_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret_text = "نص سري لا يجوز أن يظهر في السجلات"
    with caplog.at_level(logging.DEBUG):
        response = crashing_client.post("/v1/score", json={"comment": {"text": secret_text}}, headers=AUTH)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal"
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["request_id"] in error["message"]
    assert "ValueError" in caplog.text and error["request_id"] in caplog.text
    assert secret_text not in caplog.text


def test_client_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "cms-1234"})
    assert response.headers["x-request-id"] == "cms-1234"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
