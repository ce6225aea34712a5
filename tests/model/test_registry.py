"""MLflow round trip: log + register a challenger, the promotion gate, export to a bundle."""

from dataclasses import replace

import numpy as np
import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    """A private sqlite tracking store; mlflow's global URI is restored after the test."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield tmp_path
    mlflow.set_tracking_uri("")


def _shuffled(result):
    """The same run with a Pipeline refitted on shuffled labels: a model that must not ship."""
    from sklearn.base import clone

    from training.data.gather import to_frame

    frame = to_frame(_train_records(result))
    labels = np.random.default_rng(0).permutation(frame["label"].to_numpy())
    bad = clone(result.pipeline).fit(frame, labels)
    return replace(result, pipeline=bad)


def _train_records(result):
    from training.data.gather import gather, split_frozen

    records, _ = gather(result.config.data, result.config.labels, _repo())
    return split_frozen(records)[0]


def _repo():
    from tests.conftest import REPO

    return REPO


def test_register_gate_and_export(tracking, starter_result) -> None:
    from mlflow import MlflowClient

    from serving.model.bundle import BundleError
    from serving.model.moderation import ModerationModel
    from training.registry.export import export_bundle
    from training.registry.gate import promote
    from training.registry.tracking import CHALLENGER, CHAMPION, log_and_register

    name = starter_result.config.registered_model
    first = log_and_register(starter_result, tracking)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == first.version
    run = client.get_run(first.run_id)
    assert run.data.tags["data.sha256"] == starter_result.fingerprint["sha256"]
    assert "frozen.macro_f1" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"model_card.md", "plots", "eval", "bundle", "data"} <= artifacts
    _assert_run_carries_its_bundle(first, starter_result, tracking)

    decision = promote(name, root=tracking)
    assert decision.promoted and decision.reason == "no champion yet"

    # A challenger trained on shuffled labels is worse on the frozen set: the gate refuses it.
    bad = log_and_register(_shuffled(starter_result), tracking)
    refused = promote(name, root=tracking)
    assert not refused.promoted
    assert refused.challenger_score < refused.champion_score - 0.01
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == first.version

    with pytest.raises(ValueError, match="reason"):
        promote(name, version=bad.version, force=True, root=tracking)
    forced = promote(name, version=bad.version, force=True, reason="drill", root=tracking)
    assert forced.promoted and "forced" in forced.reason
    rollback = promote(name, version=first.version, force=True, reason="roll back the drill", root=tracking)
    assert rollback.promoted

    bundle = tracking / "bundle"
    metadata = export_bundle(name, bundle, root=tracking)
    assert metadata["version"] == first.version
    model = ModerationModel.from_bundle(bundle)
    assert model.version == first.version
    assert set(model.thresholds.reject_at) == set(starter_result.thresholds["reject_at"])
    assert model.metadata["training_data"]["sha256"] == starter_result.fingerprint["sha256"]

    (bundle / "model.joblib").write_bytes((bundle / "model.joblib").read_bytes()[:-10])
    with pytest.raises(BundleError, match="sha256"):
        ModerationModel.from_bundle(bundle)


def _assert_run_carries_its_bundle(registered, result, tracking) -> None:
    """The run's `bundle/` artifacts are a complete serving bundle: what a server fetches over REST."""
    import mlflow

    from serving.model.moderation import ModerationModel

    fetched = mlflow.artifacts.download_artifacts(
        run_id=registered.run_id, artifact_path="bundle", dst_path=str(tracking / "fetched")
    )
    model = ModerationModel.from_bundle(fetched)  # verifies the pickle against metadata's sha256
    assert model.version == registered.version
    assert model.metadata["run_id"] == registered.run_id
    assert list(model.labels) == model.metadata["labels"] == [str(c) for c in result.pipeline.classes_]
