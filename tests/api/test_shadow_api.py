"""Shadow mode: a challenger scores beside the champion; the caller only ever sees the champion."""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving.api.app import create_app
from serving.model.bundle import METADATA_FILE, MODEL_FILE, BundleError, write_bundle
from serving.settings import Settings
from serving.store.shadow import agreement_summary, recent_disagreements, shadow_summary
from serving.store.store import Store
from serving.store.tables import shadow_table
from tests.api.conftest import ADMIN, ADMIN_KEY, API_KEY, AUTH, MakeClient
from tests.conftest import (
    ABUSIVE,
    ON_POLITICS,
    ON_SPORT,
    POLITICS_BODY,
    POLITICS_TITLE,
    SPAM,
    SPORT_TITLE,
)

pytestmark = pytest.mark.api

CHALLENGER_VERSION = "1-challenger"

# Spam and abuse are rejected by both models; the on-topic comments are approved by the champion
# and rejected by the challenger (which rejects everything): a known mix of agreements.
REQUESTS: list[dict[str, Any]] = [
    {"comment": {"id": "c-1", "text": SPAM[0]}, "site": "news"},
    {
        "comment": {"id": "c-2", "text": ON_POLITICS[0]},
        "article": {"title": POLITICS_TITLE, "text": POLITICS_BODY},
        "site": "news",
    },
    {"comment": {"id": "c-3", "text": ABUSIVE[0]}},
    {"comment": {"id": "c-4", "text": ON_SPORT[0]}, "article": {"title": SPORT_TITLE}},
]


def write_challenger(pipeline: Any, target: Path, version: str = CHALLENGER_VERSION) -> Path:
    """The tiny pipeline with thresholds that reject every comment: same labels, different actions."""
    labels = [str(c) for c in pipeline.classes_]
    risky = [label for label in labels if label != "on_topic"]
    metadata = {
        "name": "raqib-moderator",
        "version": version,
        "labels": labels,
        "thresholds": {"reject_at": dict.fromkeys(risky, 0.0), "review_at": dict.fromkeys(risky, 0.0)},
    }
    write_bundle(pipeline, metadata, target)
    return target


@pytest.fixture(scope="module")
def challenger(tiny_pipeline: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A challenger bundle that disagrees with the champion on every comment the champion approves."""
    return write_challenger(tiny_pipeline, tmp_path_factory.mktemp("challenger") / "challenger")


@pytest.fixture
def challenger_copy(challenger: Path, tmp_path: Path) -> Path:
    """A private copy of the challenger that a test may corrupt or overwrite."""
    target = tmp_path / "models" / "challenger"
    shutil.copytree(challenger, target)
    return target


def score_each(client: TestClient, requests: list[dict[str, Any]] = REQUESTS) -> list[dict[str, Any]]:
    responses = [client.post("/v1/score", json=request, headers=AUTH) for request in requests]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [r.json() for r in responses]


def shadow_of(client: TestClient) -> dict[str, Any] | None:
    response = client.get("/v1/model", headers=AUTH)
    assert response.status_code == 200, response.text
    shadow: dict[str, Any] | None = response.json()["shadow"]
    return shadow


def expected_agreements(responses: list[dict[str, Any]]) -> int:
    # Same pipeline, and the challenger rejects everything: verdicts (action and the label that
    # drove it) match exactly where the champion rejected.
    return sum(r["decision"]["action"] == "reject" for r in responses)


def store_of(client: TestClient) -> Store:
    store = client.app.state.service.stores.current  # type: ignore[attr-defined]
    assert store is not None
    return store


def test_champion_answers_are_unchanged_by_the_shadow(make_client: MakeClient, challenger: Path) -> None:
    plain = make_client()
    shadowed = make_client(shadow_model_dir=challenger)
    assert score_each(shadowed) == score_each(plain)
    batch = {"items": [*REQUESTS, {"comment": {"text": ""}}]}
    with_shadow = shadowed.post("/v1/score/batch", json=batch, headers=AUTH)
    without = plain.post("/v1/score/batch", json=batch, headers=AUTH)
    assert with_shadow.status_code == 200
    assert with_shadow.json() == without.json()
    shadow = shadow_of(shadowed)
    assert shadow is not None and shadow["compared"] == 2 * len(REQUESTS)
    # The shadow's verdicts are not the champion's decisions: the decision counter only counts the champion.
    assert shadowed.get("/metrics").text.count("raqib_decisions_total{") == plain.get("/metrics").text.count(
        "raqib_decisions_total{"
    )


def test_model_info_reports_agreement_and_recent_disagreements(
    make_client: MakeClient, challenger: Path
) -> None:
    client = make_client(shadow_model_dir=challenger)
    responses = score_each(client)
    agreed = expected_agreements(responses)
    assert 0 < agreed < len(REQUESTS)  # the fixture's premise: some agreements, some disagreements
    shadow = shadow_of(client)
    assert shadow is not None
    assert shadow["name"] == "raqib-moderator" and shadow["version"] == CHALLENGER_VERSION
    assert shadow["loaded"] is True and shadow["error"] is None
    assert shadow["compared"] == len(REQUESTS)
    assert shadow["agreed"] == agreed
    assert shadow["agreement_rate"] == pytest.approx(agreed / len(REQUESTS))
    assert 0 < shadow["agreement_rate"] < 1
    assert shadow["counted_in"] == "store"
    assert shadow["errors"] == 0
    disagreements = shadow["disagreements"]
    assert len(disagreements) == len(REQUESTS) - agreed
    # Newest first; the politics comment was approved by the champion and rejected by the shadow.
    ids = [d["comment_id"] for d in disagreements]
    expected_ids = [r["comment_id"] for r in responses if r["decision"]["action"] != "reject"]
    assert ids == expected_ids[::-1]
    politics = next(d for d in disagreements if d["comment_id"] == "c-2")
    assert politics["site"] == "news"
    assert politics["champion"] == {"label": responses[1]["label"], "action": "approve"}
    # The challenger's label is the one that drove its reject: never the acceptable label.
    assert politics["shadow"]["action"] == "reject" and politics["shadow"]["label"] != "on_topic"
    assert responses[1]["label"] == "on_topic" and responses[1]["decision"]["label"] is None
    assert set(politics) == {"comment_id", "site", "champion", "shadow", "created_at"}
    assert datetime.fromisoformat(politics["created_at"]).tzinfo is not None
    metrics = client.get("/metrics").text
    assert f'raqib_shadow_agreement_total{{agree="true"}} {float(agreed)}' in metrics
    assert f'raqib_shadow_agreement_total{{agree="false"}} {float(len(REQUESTS) - agreed)}' in metrics


def test_no_shadow_configured_means_null(client: TestClient) -> None:
    score_each(client)
    assert shadow_of(client) is None
    assert "raqib_shadow_agreement_total{" not in client.get("/metrics").text


@pytest.mark.parametrize(
    ("damage", "message", "version"),
    [
        ("checksum", "does not match", CHALLENGER_VERSION),  # metadata readable: we still say which one
        ("missing", "no metadata.json", None),
        ("no_pickle", "no model.joblib", CHALLENGER_VERSION),
    ],
)
def test_a_broken_shadow_never_stops_the_champion(
    make_client: MakeClient, challenger_copy: Path, damage: str, message: str, version: str | None
) -> None:
    target = challenger_copy
    if damage == "checksum":
        with (challenger_copy / MODEL_FILE).open("ab") as handle:
            handle.write(b"tampered")
    elif damage == "no_pickle":
        (challenger_copy / MODEL_FILE).unlink()
    else:
        target = challenger_copy.parent / "absent"
    plain = make_client()
    client = make_client(shadow_model_dir=target)
    assert client.get("/readyz").status_code == 200
    assert score_each(client) == score_each(plain)
    shadow = shadow_of(client)
    assert shadow is not None
    assert shadow["loaded"] is False
    assert message in shadow["error"]
    assert shadow["version"] == version
    assert shadow["compared"] == 0 and shadow["agreement_rate"] is None and shadow["disagreements"] == []


def test_a_shadow_that_raises_while_scoring_is_counted_not_felt(
    make_client: MakeClient,
    challenger: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = make_client()
    client = make_client(shadow_model_dir=challenger)
    slot = client.app.state.service.models.shadow  # type: ignore[attr-defined]

    def boom(items: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"cannot score {items[0].text}")  # a message quoting the comment

    monkeypatch.setattr(slot.loaded.model, "score", boom)
    with caplog.at_level(logging.DEBUG, logger="raqib"):
        assert score_each(client, REQUESTS[:2]) == score_each(plain, REQUESTS[:2])
        batch = client.post("/v1/score/batch", json={"items": REQUESTS}, headers=AUTH)
    assert batch.status_code == 200 and all(item["ok"] for item in batch.json()["results"])
    shadow = shadow_of(client)
    assert shadow is not None
    assert shadow["errors"] == 2 + len(REQUESTS)
    assert shadow["compared"] == 0
    assert f"raqib_shadow_errors_total {float(2 + len(REQUESTS))}" in client.get("/metrics").text
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("RuntimeError" in message for message in warnings)
    assert not any(SPAM[0] in message or ON_POLITICS[0] in message for message in warnings)


def test_batch_records_a_comparison_for_each_scored_item(make_client: MakeClient, challenger: Path) -> None:
    client = make_client(shadow_model_dir=challenger)
    items = [*REQUESTS, {"comment": {"id": "bad", "text": ""}}]
    response = client.post("/v1/score/batch", json={"items": items}, headers=AUTH)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["ok"] for r in results] == [True] * len(REQUESTS) + [False]
    store = store_of(client)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(shadow_table).order_by(shadow_table.c.id)).all()
    assert [row.comment_id for row in rows] == ["c-1", "c-2", "c-3", "c-4"]  # not the invalid item
    for row, result in zip(rows, results, strict=False):
        assert row.source == "batch"
        assert row.champion_version == "0-test" and row.shadow_version == CHALLENGER_VERSION
        assert row.champion_label == result["label"] and row.champion_action == result["decision"]["action"]
        assert row.shadow_action == "reject"
        assert set(json.loads(row.shadow_scores)) == set(result["scores"])
        assert row.agree == (result["decision"]["action"] == "reject")
    assert rows[0].site == "news" and rows[2].site == ""
    summary = agreement_summary(store)
    assert summary.compared == len(REQUESTS)
    assert summary.agreed == expected_agreements(results[: len(REQUESTS)])


@pytest.mark.parametrize("store_url", [None, "sqlite://"], ids=["file", "in-memory"])
def test_concurrent_requests_record_every_comparison_and_every_audit_row(
    make_client: MakeClient, challenger: Path, store_url: str | None
) -> None:
    client = make_client(shadow_model_dir=challenger, **({"store_url": store_url} if store_url else {}))
    requests = [
        {**request, "comment": {**request["comment"], "id": f"{request['comment']['id']}-{n}"}}
        for n in range(10)
        for request in REQUESTS
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda r: client.post("/v1/score", json=r, headers=AUTH).status_code, requests)
        )
    assert statuses == [200] * len(requests)
    store = store_of(client)
    assert agreement_summary(store).compared == len(requests)
    for request in requests[:: len(REQUESTS)]:
        assert len(store.audit_for(request["comment"]["id"], request.get("site"))) == 1


def test_persisted_agreement_survives_a_new_app(
    make_client: MakeClient, tiny_bundle: Path, challenger: Path, tmp_path: Path
) -> None:
    settings: dict[str, Any] = {
        "model_dir": tiny_bundle,
        "shadow_model_dir": challenger,
        "api_keys": [API_KEY],
        "admin_key": ADMIN_KEY,
        "state_dir": tmp_path / "state",
    }
    with TestClient(create_app(Settings(**settings))) as first:
        score_each(first)
        first.post("/v1/score/batch", json={"items": REQUESTS[:2]}, headers=AUTH)
        before = shadow_of(first)
    assert before is not None and before["compared"] == len(REQUESTS) + 2
    second = make_client(**settings)
    after = shadow_of(second)
    assert after is not None
    for key in ("compared", "agreed", "agreement_rate", "disagreements", "counted_in"):
        assert after[key] == before[key], key
    # Fresh process counters: the numbers above came from the store.
    tracker = second.app.state.service.models.shadow_tracker  # type: ignore[attr-defined]
    assert tracker.process_summary("0-test", "raqib-moderator", CHALLENGER_VERSION).summary.compared == 0


def test_without_a_store_the_process_counts(
    make_client: MakeClient, challenger: Path, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x", encoding="utf-8")
    client = make_client(shadow_model_dir=challenger, store_url=f"sqlite:///{not_a_dir}/raqib.db")
    assert client.app.state.service.stores.current is None  # type: ignore[attr-defined]
    responses = score_each(client)
    shadow = shadow_of(client)
    assert shadow is not None
    assert shadow["counted_in"] == "process"
    assert shadow["compared"] == len(REQUESTS)
    assert shadow["agreed"] == expected_agreements(responses)
    assert [d["comment_id"] for d in shadow["disagreements"]] == [
        r["comment_id"] for r in reversed(responses) if r["decision"]["action"] != "reject"
    ]


def test_shadow_applies_the_same_site_policy(make_client: MakeClient, challenger: Path) -> None:
    client = make_client(
        shadow_model_dir=challenger, sites={"watch": {"mode": "observe", "trusted_authors": ["editor"]}}
    )
    request = {"comment": {"id": "t-1", "text": SPAM[0], "author": "editor"}, "site": "watch"}
    [response] = score_each(client, [request])
    # Both reject, the trusted author lowers both to review, observe mode answers approve: they agree.
    assert response["action"] == "approve" and response["decision"]["action"] == "review"
    shadow = shadow_of(client)
    assert shadow is not None and shadow["compared"] == 1 and shadow["agreed"] == 1


def test_admin_reload_reloads_the_shadow(
    make_client: MakeClient, challenger_copy: Path, tiny_pipeline: Any
) -> None:
    client = make_client(shadow_model_dir=challenger_copy)
    score_each(client, REQUESTS[:2])
    write_challenger(tiny_pipeline, challenger_copy, version="2-challenger")
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    shadow = shadow_of(client)
    assert shadow is not None and shadow["version"] == "2-challenger" and shadow["loaded"]
    assert shadow["compared"] == 0  # a new pair: the first challenger's numbers are not carried over
    score_each(client, REQUESTS[:1])
    # A broken bundle on reload: the champion reloads fine, the last good shadow keeps comparing.
    with (challenger_copy / MODEL_FILE).open("ab") as handle:
        handle.write(b"tampered")
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    shadow = shadow_of(client)
    assert shadow is not None
    assert shadow["loaded"] is True and shadow["version"] == "2-challenger"
    assert "does not match" in shadow["error"]
    score_each(client, REQUESTS[:1])
    assert shadow_of(client)["compared"] == 2  # type: ignore[index]


def test_a_reload_repairs_a_shadow_that_failed_at_start(
    make_client: MakeClient, challenger_copy: Path, tiny_pipeline: Any
) -> None:
    metadata = challenger_copy / METADATA_FILE
    metadata.write_text("{not json", encoding="utf-8")
    client = make_client(shadow_model_dir=challenger_copy)
    shadow = shadow_of(client)
    assert shadow is not None and shadow["loaded"] is False and shadow["name"] is None
    write_challenger(tiny_pipeline, challenger_copy)
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    shadow = shadow_of(client)
    assert shadow is not None and shadow["loaded"] is True and shadow["error"] is None


def test_shadow_model_uri_is_resolved_like_model_uri(
    make_client: MakeClient, challenger: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, Path]] = []

    def fake_fetch(model_uri: str, registry_url: str | None, state_dir: Path) -> Path:
        calls.append((model_uri, state_dir))
        if model_uri.endswith("@missing"):
            raise BundleError(f"cannot resolve {model_uri}: no such alias")
        return challenger

    monkeypatch.setattr("serving.runtime.holder.fetch_registered_bundle", fake_fetch)
    state = tmp_path / "state"
    client = make_client(shadow_model_uri="models:/raqib-moderator@challenger", state_dir=state)
    assert calls == [("models:/raqib-moderator@challenger", state)]
    shadow = shadow_of(client)
    assert shadow is not None and shadow["loaded"] and shadow["version"] == CHALLENGER_VERSION
    broken = make_client(shadow_model_uri="models:/raqib-moderator@missing")
    assert broken.get("/readyz").status_code == 200
    shadow = shadow_of(broken)
    assert shadow is not None and shadow["loaded"] is False and "no such alias" in shadow["error"]


def test_shadow_model_uri_must_be_a_registry_uri() -> None:
    with pytest.raises(ValidationError, match="shadow_model_uri must look like models:/"):
        Settings(shadow_model_uri="runs:/abc/model")


def test_queue_helpers_list_disagreements_and_filter_by_pair(
    make_client: MakeClient, challenger: Path
) -> None:
    client = make_client(shadow_model_dir=challenger)
    responses = score_each(client)
    store = store_of(client)
    disagreeing = [r["comment_id"] for r in reversed(responses) if r["decision"]["action"] != "reject"]
    latest = recent_disagreements(store, limit=1)
    assert [d.comment_id for d in latest] == disagreeing[:1]
    assert latest[0].champion.action == "approve" and latest[0].shadow.action == "reject"
    assert latest[0].shadow_version == CHALLENGER_VERSION and latest[0].champion_version == "0-test"
    summary = shadow_summary(store, champion_version="0-test", shadow_version=CHALLENGER_VERSION)
    assert summary.summary.compared == len(REQUESTS)
    assert [d.comment_id for d in summary.disagreements] == disagreeing
    other = shadow_summary(store, shadow_version="9-other")
    assert other.summary.compared == 0 and other.summary.agreement_rate is None
    assert other.disagreements == []
