"""Registered versions out of MLflow: their Pipeline, their frozen set, and serving bundles on disk.

`models:/NAME@ALIAS` and `models:/NAME/VERSION` are resolved here, for `raqib export` and for the
batch tools that accept a registry URI wherever they accept a bundle directory.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.model.bundle import write_bundle
from serving.schema import is_model_uri, parse_model_uri
from training.data.contract import LabeledRecord, read_records
from training.registry.tracking import BUNDLE_ARTIFACT, CHAMPION, FROZEN_ARTIFACT, configure


def model_version(client: Any, name: str, alias: str | None, version: str | None) -> Any:
    """The registry's ModelVersion by number, else by alias (champion when neither is given)."""
    if version is not None:
        return client.get_model_version(name, str(version))
    return client.get_model_version_by_alias(name, alias or CHAMPION)


def load_version(name: str, version: str) -> Any:
    """The registered sklearn Pipeline of a version."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def load_registered(uri: str, root: Path = Path(".")) -> Any:
    """The sklearn Pipeline a `models:/` URI names, from the tracking store under `root`."""
    import mlflow.sklearn

    configure(root)
    return mlflow.sklearn.load_model(str(parse_model_uri(uri)))


def _download_json(run_id: str, artifact: str) -> Any:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp)
        return json.loads(Path(path).read_text(encoding="utf-8"))


def frozen_records_of(run_id: str) -> list[LabeledRecord]:
    """The frozen evaluation set a run recorded."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=FROZEN_ARTIFACT, dst_path=tmp)
        return read_records(path)


def export_bundle(
    name: str,
    output: Path,
    *,
    alias: str | None = CHAMPION,
    version: str | None = None,
    root: Path = Path("."),
) -> dict[str, Any]:
    """Write a self-contained serving bundle (joblib pickle + metadata with its sha256)."""
    from mlflow import MlflowClient

    configure(root)
    registered = model_version(MlflowClient(), name, alias, version)
    pipeline = load_version(name, str(registered.version))
    metadata = _download_json(registered.run_id, BUNDLE_ARTIFACT)
    metadata["version"] = str(registered.version)
    metadata["alias"] = alias
    metadata["exported_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return write_bundle(pipeline, metadata, output)


@contextlib.contextmanager
def resolved_bundle(spec: str, root: Path = Path(".")) -> Iterator[Path]:
    """The bundle directory of `spec`: as given, or a registry version exported to a temp directory.

    A malformed `models:/` URI raises serving.schema.ModelUriError.
    """
    if not is_model_uri(spec):
        yield Path(spec)
        return
    uri = parse_model_uri(spec)
    with tempfile.TemporaryDirectory(prefix="raqib-model-") as tmp:
        bundle = Path(tmp) / "bundle"
        # Exported as `raqib export` does it: the run's metadata (labels, thresholds) beside the pickle.
        export_bundle(uri.name, bundle, alias=uri.alias, version=uri.version, root=root)
        yield bundle
