"""API keys: Bearer auth on the API, optional on health/metrics, open (with a warning) when unset."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API_KEY, AUTH, OTHER_API_KEY, MakeClient
from tests.conftest import ON_POLITICS

pytestmark = pytest.mark.api

PAYLOAD = {"comment": {"text": ON_POLITICS[0]}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_missing_key_is_401_with_challenge(client: TestClient) -> None:
    response = client.post("/v1/score", json=PAYLOAD)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-key",
        f"Bearer {API_KEY}x",
        f"Basic {API_KEY}",
        API_KEY,
        "Bearer ",
        "Bearer مفتاح".encode(),  # raw UTF-8 bytes in a header: compared, not crashed on
    ],
)
def test_wrong_key_is_401(client: TestClient, header: str | bytes) -> None:
    response = client.post("/v1/score", json=PAYLOAD, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_every_configured_key_works(make_client: MakeClient) -> None:
    client = make_client(api_keys=[API_KEY, OTHER_API_KEY])
    for key in (API_KEY, OTHER_API_KEY):
        assert client.post("/v1/score", json=PAYLOAD, headers=bearer(key)).status_code == 200
        assert client.get("/v1/model", headers=bearer(key)).status_code == 200


def test_keys_file_adds_keys(make_client: MakeClient, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# one key per line\nfile-key-1\n\nfile-key-2\n", encoding="utf-8")
    client = make_client(api_keys=[API_KEY], api_keys_file=keys_file)
    for key in (API_KEY, "file-key-1", "file-key-2"):
        assert client.post("/v1/score", json=PAYLOAD, headers=bearer(key)).status_code == 200
    assert client.post("/v1/score", json=PAYLOAD, headers=bearer("# one key per line")).status_code == 401


def test_model_info_needs_a_key(client: TestClient) -> None:
    assert client.get("/v1/model").status_code == 401


def test_health_ready_and_metrics_are_open_by_default(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_health_can_require_a_key(make_client: MakeClient) -> None:
    client = make_client(require_auth_for_health=True)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=AUTH).status_code == 200, path


def test_without_keys_the_api_is_open_and_says_so_once(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="raqib"):
        client = make_client(api_keys=[])
        assert client.post("/v1/score", json=PAYLOAD).status_code == 200
        assert client.post("/v1/score", json=PAYLOAD).status_code == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "OPEN" in r.getMessage()]
    assert len(warnings) == 1


def test_with_keys_there_is_no_open_warning(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="raqib"):
        make_client()
    assert "OPEN" not in caplog.text


def test_keys_and_comment_text_never_reach_the_logs(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    text = "تعليق خاص جدا للاختبار"
    with caplog.at_level(logging.DEBUG):
        client = make_client()
        client.post("/v1/score", json={"comment": {"text": text}}, headers=AUTH)
        client.post("/v1/score", json={"comment": {"text": text}}, headers=bearer("a-wrong-key"))
        client.post("/v1/admin/reload", headers=bearer("a-wrong-admin-key"))
    assert "POST /v1/score 200" in caplog.text  # the access line is there ...
    for secret in (API_KEY, "a-wrong-key", "a-wrong-admin-key", text):
        assert secret not in caplog.text  # ... without keys or text
