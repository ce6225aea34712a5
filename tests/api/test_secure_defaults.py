"""Secure defaults: no CORS unless configured, one JSON object per log line with the request id and
never the comment, e-mail addresses or keys, and secrets read from files in RAQIB_SECRETS_DIR."""

from __future__ import annotations

import io
import json
import logging
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from serving.api.app import create_app
from serving.api.middleware import JsonLogFormatter
from serving.settings import Settings, SettingsError, load_settings
from serving.store.writer import StoreWriter
from tests.api.conftest import API_KEY, AUTH, MakeClient
from tests.conftest import REPO, SPAM, clean_env, free_port, wait_until

pytestmark = pytest.mark.api

CMS = "https://cms.example.com"
PREFLIGHT = {
    "Origin": CMS,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization",
}
EMAIL = "reader.name@example.org"
SECRET_TEXT = f"نص تعليق خاص لا يظهر في السجلات، راسلني على {EMAIL}"


# --- CORS ----------------------------------------------------------------------------------------


def test_no_cors_headers_unless_origins_are_configured(client: TestClient) -> None:
    preflight = client.options("/v1/score", headers=PREFLIGHT)
    assert preflight.status_code == 405  # no CORS middleware answers it
    assert not [name for name in preflight.headers if name.lower().startswith("access-control-")]
    scored = client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers={**AUTH, "Origin": CMS})
    assert scored.status_code == 200
    assert "access-control-allow-origin" not in scored.headers


def test_configured_origins_and_only_those_may_call_from_a_browser(make_client: MakeClient) -> None:
    client = make_client(cors_origins=[CMS])
    preflight = client.options("/v1/score", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == CMS
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    scored = client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers={**AUTH, "Origin": CMS})
    assert scored.headers["access-control-allow-origin"] == CMS
    assert "x-request-id" in scored.headers["access-control-expose-headers"].lower()

    other = {**PREFLIGHT, "Origin": "https://evil.example"}
    refused = client.options("/v1/score", headers=other)
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    simple = client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers={**AUTH, **other})
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize(
    "origin", ["*", "https://cms.example.com/", "cms.example.com", "https://a.example/path"]
)
def test_cors_origins_must_be_exact_origins(origin: str) -> None:
    with pytest.raises(ValidationError, match="not an origin"):
        Settings(cors_origins=[origin])


def test_cors_origins_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAQIB_CORS_ORIGINS", f"{CMS}, http://localhost:3000")
    assert load_settings().cors_origins == [CMS, "http://localhost:3000"]


# --- logs ----------------------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The raqib loggers' output through the JSON formatter, as the service writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    service_logger = logging.getLogger("raqib")
    previous = service_logger.level
    service_logger.addHandler(handler)
    service_logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        service_logger.removeHandler(handler)
        service_logger.setLevel(previous)


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line parsed as JSON (fails on a line that is not one JSON object)."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_every_request_is_one_json_line_with_its_request_id(
    make_client: MakeClient, json_log: io.StringIO
) -> None:
    client = make_client()
    given = client.get("/healthz", headers={"X-Request-ID": "cms-req-42"})
    generated = client.post(
        "/v1/score", json={"comment": {"text": SPAM[0]}}, headers={**AUTH, "X-Request-ID": "x y"}
    )
    assert given.headers["x-request-id"] == "cms-req-42"
    assert generated.headers["x-request-id"] != "x y" and len(generated.headers["x-request-id"]) == 32
    access = [line for line in log_lines(json_log) if line["logger"] == "raqib.access"]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("GET", "/healthz", 200),
        ("POST", "/v1/score", 200),
    ]
    assert [a["request_id"] for a in access] == ["cms-req-42", generated.headers["x-request-id"]]
    for line in access:
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["level"] == "INFO" and line["time"].endswith("+00:00")


def test_lines_logged_while_answering_carry_the_request_id(
    make_client: MakeClient, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()

    def disk_full(self: StoreWriter, *args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(StoreWriter, "add_audit", disk_full)
    response = client.post("/v1/score", json={"comment": {"text": SECRET_TEXT}}, headers=AUTH)
    assert response.status_code == 200
    (audit,) = [line for line in log_lines(json_log) if "audit log" in line["message"]]
    assert audit["level"] == "ERROR" and audit["request_id"] == response.headers["x-request-id"]
    assert SECRET_TEXT not in json_log.getvalue()


def test_comment_text_emails_and_keys_never_reach_the_logs(
    make_client: MakeClient, json_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(webhook_secret="hook-secret")
    comment = {"id": "c-1", "text": SECRET_TEXT, "author": EMAIL}
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/score", json={"comment": comment, "site": "news"}, headers=AUTH)
        client.post("/v1/score/batch", json={"items": [{"comment": comment}]}, headers=AUTH)
        client.post(
            "/v1/feedback", json={"comment_id": "c-1", "label": "spam", "comment": comment}, headers=AUTH
        )
        body = {"comment": {"text": SECRET_TEXT}, "requestedAttributes": {"SPAM": {}}}
        client.post("/v1alpha1/comments:analyze", params={"key": API_KEY}, json=body)
        form = {"api_key": API_KEY, "comment_content": SECRET_TEXT, "comment_author_email": EMAIL}
        client.post("/1.1/comment-check", data=form)
        client.post("/v1/score", json={"comment": comment}, headers={"Authorization": "Bearer wrong-key-123"})
    # The server's own lines (the test client's httpx logs its request URLs, ?key= included).
    server_log = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if r.name.startswith(("raqib", "uvicorn"))
    )
    assert "POST /v1/score 200" in server_log  # logging was on ...
    for secret in (SECRET_TEXT, SECRET_TEXT[:12], EMAIL, API_KEY, "wrong-key-123", "hook-secret"):
        assert secret not in server_log  # ... and none of these reached it, at any level
        assert secret not in json_log.getvalue()


def test_text_log_format_is_still_available(make_client: MakeClient) -> None:
    client = make_client(log_format="text")
    assert client.app.state.service.settings.log_format == "text"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        Settings(log_format="xml")


def test_raqib_serve_writes_only_json_lines(tiny_bundle: Path) -> None:
    """The real server (`raqib serve` → serving.api.app.run): uvicorn's lines and ours, all JSON."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c", f"from serving.api.app import run; run(port={port})"],
        cwd=REPO,
        env=clean_env(RAQIB_MODEL_DIR=str(tiny_bundle), RAQIB_API_KEYS="proc-key-7"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60), "never ready"
        scored = httpx.post(
            f"{base}/v1/score",
            json={"comment": {"text": SECRET_TEXT}},
            headers={"Authorization": "Bearer proc-key-7", "X-Request-ID": "proc-1"},
        )
        assert scored.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {"uvicorn.error", "raqib", "raqib.access"} <= {line["logger"] for line in lines}
    (access,) = [line for line in lines if line.get("request_id") == "proc-1"]
    assert (access["method"], access["path"], access["status"]) == ("POST", "/v1/score", 200)
    assert "proc-key-7" not in output and SECRET_TEXT not in output and EMAIL not in output


# --- secrets from files --------------------------------------------------------------------------


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "raqib_api_keys").write_text("file-key-1\nfile-key-2\n", encoding="utf-8")
    (directory / "raqib_admin_key").write_text("file-admin-key\n", encoding="utf-8")
    (directory / "raqib_webhook_secret").write_text("file-hook-secret\n", encoding="utf-8")
    (directory / "raqib_store_url").write_text(f"sqlite:///{tmp_path / 'store.db'}\n", encoding="utf-8")
    monkeypatch.setenv("RAQIB_SECRETS_DIR", str(directory))
    return directory


def test_secrets_come_from_files_in_the_secrets_dir(
    secrets_dir: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    settings = load_settings(model_dir=tiny_bundle, state_dir=tmp_path / "state")
    assert settings.resolved_api_keys() == ("file-key-1", "file-key-2")
    assert settings.resolved_admin_key() == "file-admin-key"
    assert settings.resolved_webhook_secrets() == (b"file-hook-secret",)
    assert "file-key" not in repr(settings) and "store.db" not in repr(settings)
    with TestClient(create_app(settings)) as client:
        for key in ("file-key-1", "file-key-2"):
            scored = client.post(
                "/v1/score", json={"comment": {"text": SPAM[0]}}, headers={"Authorization": f"Bearer {key}"}
            )
            assert scored.status_code == 200
        assert (
            client.post("/v1/admin/reload", headers={"Authorization": "Bearer file-admin-key"}).status_code
            == 200
        )
        assert client.app.state.service.stores.current is not None  # type: ignore[attr-defined]
    assert (tmp_path / "store.db").is_file()  # the store URL from the file was used


def test_the_environment_wins_over_the_secrets_dir(
    secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAQIB_ADMIN_KEY", "env-admin-key")
    assert load_settings().resolved_admin_key() == "env-admin-key"


def test_a_secrets_dir_that_does_not_exist_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAQIB_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="RAQIB_SECRETS_DIR"):
        load_settings()
