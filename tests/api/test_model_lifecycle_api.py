"""Readiness, /v1/model and reloads: a broken bundle never replaces a working model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.model.bundle import METADATA_FILE, MODEL_FILE, sha256_file
from tests.api.conftest import ADMIN, AUTH, MakeClient
from tests.conftest import SPAM

pytestmark = pytest.mark.api


def corrupt_checksum(bundle: Path) -> None:
    """Flip bytes of the pickle so it no longer matches the sha256 in the metadata."""
    with (bundle / MODEL_FILE).open("ab") as handle:
        handle.write(b"tampered")


def truncate_pickle(bundle: Path) -> None:
    """Cut the pickle in half and re-sign it, so the checksum passes and unpickling fails."""
    path = bundle / MODEL_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    metadata = json.loads((bundle / METADATA_FILE).read_text(encoding="utf-8"))
    metadata["sha256"] = sha256_file(path)
    (bundle / METADATA_FILE).write_text(json.dumps(metadata), encoding="utf-8")


def write_version(pipeline: Any, bundle: Path, version: str) -> None:
    from serving.model.bundle import write_bundle

    metadata = json.loads((bundle / METADATA_FILE).read_text(encoding="utf-8"))
    metadata.pop("sha256")
    metadata["version"] = version
    write_bundle(pipeline, metadata, bundle)


def test_healthz_and_readyz_when_loaded(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model": {"name": "raqib-moderator", "version": "0-test"}}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "no metadata.json"),
        ("checksum", "does not match"),
        ("truncated", "cannot unpickle"),
        ("no_pickle", "no model.joblib"),
    ],
)
def test_not_ready_with_a_bad_bundle_but_alive(
    make_client: MakeClient, bundle_copy: Path, damage: str, message: str
) -> None:
    if damage == "missing":
        target = bundle_copy.parent / "absent"
    else:
        target = bundle_copy
        {
            "checksum": corrupt_checksum,
            "truncated": truncate_pickle,
            "no_pickle": lambda b: (b / MODEL_FILE).unlink(),
        }[damage](bundle_copy)
    client = make_client(model_dir=target)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "model_not_loaded"
    assert message in ready.json()["error"]["message"]
    scored = client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH)
    assert scored.status_code == 503
    assert scored.json()["error"]["code"] == "model_not_loaded"
    assert client.get("/v1/model", headers=AUTH).status_code == 503
    assert "raqib_model_loaded 0.0" in client.get("/metrics").text


def test_model_info(client: TestClient, tiny_bundle: Path) -> None:
    response = client.get("/v1/model", headers=AUTH)
    assert response.status_code == 200
    info = response.json()
    assert info["name"] == "raqib-moderator" and info["version"] == "0-test"
    assert set(info["labels"]) == {"on_topic", "off_topic", "spam", "abusive"}
    assert info["thresholds"]["reject_at"]["spam"] == 0.8
    assert info["thresholds"]["review_at"]["spam"] == 0.4
    assert info["training_data"] == {"sha256": "tiny", "rows": info["training_data"]["rows"]}
    assert "frozen_macro_f1" in info["metrics"]
    assert info["bundle_path"] == str(tiny_bundle.resolve())
    assert info["loaded_at"]


def test_model_info_shows_site_policy(make_client: MakeClient) -> None:
    client = make_client(
        sites={"news": {"reject_at": {"spam": 0.97}, "mode": "observe", "trusted_authors": ["a", "b"]}}
    )
    site = client.get("/v1/model", headers=AUTH).json()["sites"]["news"]
    assert site["mode"] == "observe"
    assert site["thresholds"]["reject_at"]["spam"] == 0.97
    assert site["thresholds"]["reject_at"]["abusive"] == 0.8  # not overridden: the model's own
    assert site["trusted_authors"] == 2


def test_reload_swaps_in_a_new_version(
    make_client: MakeClient, bundle_copy: Path, tiny_pipeline: Any
) -> None:
    client = make_client(model_dir=bundle_copy)
    write_version(tiny_pipeline, bundle_copy, "1-test")
    # Written but not reloaded yet: the old version still answers.
    assert client.get("/v1/model", headers=AUTH).json()["version"] == "0-test"
    response = client.post("/v1/admin/reload", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "reloaded"
    assert body["model"]["version"] == "1-test" and body["previous"]["version"] == "0-test"
    assert client.get("/v1/model", headers=AUTH).json()["version"] == "1-test"
    scored = client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH).json()
    assert scored["model"]["version"] == "1-test"
    metrics = client.get("/metrics").text
    assert 'raqib_model_reloads_total{outcome="success"} 1.0' in metrics
    assert 'raqib_model_info{name="raqib-moderator",version="1-test"} 1.0' in metrics


@pytest.mark.parametrize("damage", [corrupt_checksum, truncate_pickle])
def test_failed_reload_keeps_the_old_model(make_client: MakeClient, bundle_copy: Path, damage: Any) -> None:
    client = make_client(model_dir=bundle_copy)
    damage(bundle_copy)
    response = client.post("/v1/admin/reload", headers=ADMIN)
    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "reload_failed" and body["error"]["field"] is None
    assert body["model"] == {"name": "raqib-moderator", "version": "0-test"}
    assert client.get("/readyz").status_code == 200
    scored = client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH)
    assert scored.status_code == 200
    assert scored.json()["model"]["version"] == "0-test" and scored.json()["action"] == "reject"
    assert 'raqib_model_reloads_total{outcome="failure"} 1.0' in client.get("/metrics").text


def test_reload_fixes_a_service_that_started_without_a_model(
    make_client: MakeClient, bundle_copy: Path, tiny_pipeline: Any
) -> None:
    corrupt_checksum(bundle_copy)
    client = make_client(model_dir=bundle_copy)
    assert client.get("/readyz").status_code == 503
    failed = client.post("/v1/admin/reload", headers=ADMIN)
    assert failed.status_code == 409 and failed.json()["model"] is None
    write_version(tiny_pipeline, bundle_copy, "2-test")
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    assert client.get("/readyz").json()["model"]["version"] == "2-test"


def test_reload_needs_the_admin_key(client: TestClient) -> None:
    missing = client.post("/v1/admin/reload")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    api_key = client.post("/v1/admin/reload", headers=AUTH)
    assert api_key.status_code == 403 and api_key.json()["error"]["code"] == "forbidden"


def test_reload_is_forbidden_without_an_admin_key_configured(make_client: MakeClient) -> None:
    client = make_client(admin_key=None)
    response = client.post("/v1/admin/reload", headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "admin key not configured"


def test_admin_key_from_file(make_client: MakeClient, tmp_path: Path) -> None:
    key_file = tmp_path / "admin.key"
    key_file.write_text("file-admin-key\n", encoding="utf-8")
    client = make_client(admin_key=None, admin_key_file=key_file)
    response = client.post("/v1/admin/reload", headers={"Authorization": "Bearer file-admin-key"})
    assert response.status_code == 200


def test_a_reload_lets_the_model_it_replaced_go(
    make_client: MakeClient, bundle_copy: Path, tiny_pipeline: Any
) -> None:
    # Each worker held on to the model it started with for as long as it ran, whatever it reloaded.
    import gc
    import weakref

    client = make_client(model_dir=bundle_copy)
    service = client.app.state.service  # type: ignore[attr-defined]
    first = weakref.ref(service.models.current.model)
    assert client.post("/v1/score", json={"comment": {"text": SPAM[0]}}, headers=AUTH).status_code == 200
    write_version(tiny_pipeline, bundle_copy, "1-test")
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    second = weakref.ref(service.models.current.model)
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    gc.collect()
    assert first() is None and second() is None
    assert service.models.current.model is not None
