"""Corrupt bundle drills: at start-up the process stays up, says why in one log line and is not ready;
on reload (admin endpoint or SIGHUP) the old model keeps serving.

tests/api/test_model_lifecycle_api.py already checks /readyz and /v1/score for a missing directory, a
checksum mismatch, a truncated pickle and a missing pickle, and a 409 reload for the first two; this
file adds the log lines, the reload paths it does not cover, and damage it does not try.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pytest
from fastapi.testclient import TestClient

from serving.api.app import _reload_quietly
from serving.api.routes.admin import perform_reload
from serving.model.bundle import METADATA_FILE, MODEL_FILE, sha256_file
from tests.api.conftest import ADMIN, AUTH, MakeClient
from tests.api.test_model_lifecycle_api import corrupt_checksum, truncate_pickle
from tests.conftest import SPAM

pytestmark = pytest.mark.api


def _metadata(bundle: Path) -> dict[str, Any]:
    metadata: dict[str, Any] = json.loads((bundle / METADATA_FILE).read_text(encoding="utf-8"))
    return metadata


def _write_metadata(bundle: Path, metadata: dict[str, Any]) -> None:
    (bundle / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")


def remove_pickle(bundle: Path) -> None:
    (bundle / MODEL_FILE).unlink()


def drop_checksum(bundle: Path) -> None:
    """Metadata without its sha256: nothing vouches for the pickle, so it must not be unpickled."""
    metadata = _metadata(bundle)
    del metadata["sha256"]
    _write_metadata(bundle, metadata)


def foreign_pickle(bundle: Path) -> None:
    """A well-formed, correctly signed pickle of something that is not a model."""
    joblib.dump({"not": "a pipeline"}, bundle / MODEL_FILE)
    _write_metadata(bundle, {**_metadata(bundle), "sha256": sha256_file(bundle / MODEL_FILE)})


def garble_metadata(bundle: Path) -> None:
    (bundle / METADATA_FILE).write_text('{"name": "raqib-moderator", "version": ', encoding="utf-8")


Damage = Callable[[Path], None]
DAMAGE = [
    pytest.param(truncate_pickle, "cannot unpickle", id="truncated_pickle"),
    pytest.param(corrupt_checksum, "does not match metadata", id="sha256_mismatch"),
    pytest.param(remove_pickle, f"no {MODEL_FILE}", id="missing_model_file"),
    pytest.param(drop_checksum, "lacks 'sha256'", id="no_sha256_in_metadata"),
    pytest.param(foreign_pickle, "is not a classifier pipeline", id="not_a_model"),
    pytest.param(garble_metadata, "unreadable", id="garbled_metadata"),
]


def errors_about(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]


@pytest.mark.parametrize(("damage", "reason"), DAMAGE)
def test_start_up_with_a_broken_bundle_logs_why_and_stays_up(
    make_client: MakeClient, bundle_copy: Path, damage: Damage, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    damage(bundle_copy)
    with caplog.at_level(logging.INFO, logger="raqib"):
        client = make_client(model_dir=bundle_copy)
    (line,) = errors_about(caplog, "no model loaded")
    assert reason in line.getMessage()
    assert line.name == "raqib"
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and reason in ready.json()["error"]["message"]


@pytest.mark.parametrize(("damage", "reason"), DAMAGE)
def test_a_reload_of_a_broken_bundle_keeps_the_old_model_serving(
    make_client: MakeClient, bundle_copy: Path, damage: Damage, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(model_dir=bundle_copy)
    damage(bundle_copy)
    with caplog.at_level(logging.INFO, logger="raqib"):
        response = client.post("/v1/admin/reload", headers=ADMIN)
    assert response.status_code == 409
    assert (
        response.json()["error"]["code"] == "reload_failed" and reason in response.json()["error"]["message"]
    )
    (line,) = errors_about(caplog, "model reload (admin endpoint) failed")
    assert "still serving raqib-moderator 0-test" in line.getMessage() and reason in line.getMessage()
    assert_still_serving(client)


def assert_still_serving(client: TestClient) -> None:
    scored = client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH)
    assert scored.status_code == 200
    assert scored.json()["model"]["version"] == "0-test" and scored.json()["action"] == "reject"
    assert client.get("/readyz").status_code == 200
    assert 'raqib_model_reloads_total{outcome="failure"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(("damage", "reason"), DAMAGE[:3])
def test_a_sighup_reload_of_a_broken_bundle_keeps_the_old_model_serving(
    make_client: MakeClient, bundle_copy: Path, damage: Damage, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(model_dir=bundle_copy)
    service = client.app.state.service  # type: ignore[attr-defined]
    damage(bundle_copy)
    with caplog.at_level(logging.INFO, logger="raqib"):
        _reload_quietly(service)  # what the SIGHUP handler runs; it must not raise
    (line,) = errors_about(caplog, "model reload (SIGHUP) failed")
    assert reason in line.getMessage()
    assert_still_serving(client)


def test_the_reload_function_raises_and_swaps_nothing(make_client: MakeClient, bundle_copy: Path) -> None:
    from serving.model.bundle import BundleError

    client = make_client(model_dir=bundle_copy)
    service = client.app.state.service  # type: ignore[attr-defined]
    before = service.models.current
    truncate_pickle(bundle_copy)
    with pytest.raises(BundleError, match="cannot unpickle"):
        perform_reload(service, "test")
    assert service.models.current is before
    assert_still_serving(client)
