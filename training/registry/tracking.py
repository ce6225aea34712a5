"""MLflow tracking: where the store is, one run per training, and its registered model version.

Each registered version's run also carries the complete serving bundle under `bundle/`
(`model.joblib` and `metadata.json` with the pickle's sha256), so a server can fetch a version over
MLflow's REST API without mlflow or any training code; `raqib export` writes the same bundle to disk.
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.model.bundle import write_bundle
from serving.schema import ABUSIVE, OFF_TOPIC
from training.data.contract import write_jsonl
from training.data.gather import to_frame
from training.experiment.heads import FROM_LEFT_OUT
from training.registry.card import model_card, plots

if TYPE_CHECKING:
    from training.experiment.train import TrainResult

CHALLENGER = "challenger"
CHAMPION = "champion"
FROZEN_DIR = "eval"
FROZEN_ARTIFACT = f"{FROZEN_DIR}/frozen.jsonl"
BUNDLE_DIR = "bundle"
BUNDLE_ARTIFACT = f"{BUNDLE_DIR}/metadata.json"
PACKAGES = ("raqib", "scikit-learn", "numpy", "scipy", "pandas", "pyarabic", "joblib", "mlflow")


def default_tracking_uri(root: str | Path = ".") -> str:
    """The MLflow store: MLFLOW_TRACKING_URI, else sqlite under <root>/experiments/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (
        f"sqlite:///{(Path(root) / 'experiments' / 'mlflow.db').resolve()}"
    )


def configure(root: Path = Path(".")) -> str:
    """Point mlflow at the tracking store; returns the URI in use."""
    import mlflow

    uri = default_tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(name: str, root: Path) -> str:
    """The id of the named experiment, created (with its artifact location) on first use."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    artifacts = (root / "experiments" / "mlartifacts").resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    # A local sqlite store keeps its artifacts beside it under experiments/ (git-ignored); a
    # tracking server decides its own artifact root. (mlflow.set_tracking_uri exports
    # MLFLOW_TRACKING_URI, so the environment cannot tell us which case this is.)
    local = mlflow.get_tracking_uri().startswith("sqlite:")
    location = artifacts.as_uri() if local else None
    return str(mlflow.create_experiment(name, artifact_location=location))


def library_versions() -> dict[str, str]:
    """Versions of the libraries the model depends on (for the run and the bundle)."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as MLflow metric names (`frozen.spam.f1`); non-numbers are left out."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float) and value is not None and np.isfinite(value):
            flat[name.replace(":", "_")] = float(value)
    return flat


def final_threshold_labels(result: TrainResult) -> list[str]:
    """The labels whose review_at comes from left-out predictions: the abusive head's, and off_topic
    when the relevance component decides it (its thresholds are chosen out of fold by article)."""
    head = result.metrics.get("abuse_head", {})
    final = [ABUSIVE] if head.get("thresholds_from") == FROM_LEFT_OUT else []
    if "relevance" in result.metrics:
        final.append(OFF_TOPIC)
    return final


def bundle_metadata(result: TrainResult) -> dict[str, Any]:
    """What serving needs beside the pickle: labels, thresholds, metrics, data fingerprint."""
    frozen = result.metrics.get("frozen", {})
    return {
        "name": result.config.registered_model,
        "labels": [str(c) for c in result.pipeline.classes_],
        "thresholds": result.thresholds,
        # Labels whose thresholds were chosen on sources the model never saw (serving never
        # overrides them with its "most likely label" fallback).
        "final_thresholds": final_threshold_labels(result),
        "classifier": result.best,
        "metrics": {
            "frozen_macro_f1": frozen.get("macro_f1"),
            "frozen_accuracy": frozen.get("accuracy"),
            "frozen_ece": frozen.get("ece"),
            "cv_macro_f1": result.metrics.get("cv", {}).get("cv_macro_f1"),
            "false_off_topic": result.metrics.get("false_off_topic"),
        },
        "training_data": result.fingerprint,
        "frozen_eval_data": result.frozen_fingerprint,
        "experiment": result.config.name,
        "libraries": library_versions(),
    }


@dataclass(frozen=True)
class RegisteredRun:
    """Where a run landed: run id and registered version."""

    run_id: str
    version: str
    tracking_uri: str


def log_and_register(
    result: TrainResult, root: Path = Path("."), config_path: str | None = None
) -> RegisteredRun:
    """Log the run (params, metrics, card, data, plots), register the model and its bundle as `challenger`."""
    import mlflow
    from mlflow import MlflowClient

    uri = configure(root)
    with (
        mlflow.start_run(experiment_id=experiment_id(result.config.name, root)) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        workdir = Path(tmp)
        _log_params(result, config_path)
        _log_metrics(result)
        _log_evidence(result, workdir)
        version = _register_model(result)
        _log_bundle(result, version, run.info.run_id, workdir / BUNDLE_DIR)
    client = MlflowClient()
    client.set_registered_model_alias(result.config.registered_model, CHALLENGER, version)
    client.set_model_version_tag(result.config.registered_model, version, "run_id", run.info.run_id)
    return RegisteredRun(run_id=run.info.run_id, version=version, tracking_uri=uri)


def _log_params(result: TrainResult, config_path: str | None) -> None:
    import mlflow

    mlflow.log_params(
        {
            "classifier": result.best["kind"],
            **{f"clf.{k}": v for k, v in result.best["params"].items()},
            **{f"features.{k}": v for k, v in result.config.features.model_dump().items()},
            **{f"augment.{k}": v for k, v in result.config.augment.model_dump().items()},
            "seed": result.config.seed,
            "config_file": config_path or "(defaults)",
        }
    )


def _log_metrics(result: TrainResult) -> None:
    import mlflow

    mlflow.log_metrics(flat_metrics({k: v for k, v in result.metrics.items() if k != "frozen"}))
    frozen = result.metrics.get("frozen", {})
    mlflow.log_metrics(
        flat_metrics({k: frozen[k] for k in ("accuracy", "macro_f1", "ece") if k in frozen}, "frozen.")
    )
    for label, m in frozen.get("per_class", {}).items():
        mlflow.log_metrics(flat_metrics(m, f"frozen.{label}."))
    mlflow.set_tags(
        {
            "data.sha256": result.fingerprint["sha256"],
            "data.rows": str(result.fingerprint["rows"]),
            "frozen.sha256": result.frozen_fingerprint["sha256"],
        }
    )


def _log_evidence(result: TrainResult, workdir: Path) -> None:
    """Config, data fingerprints, every metric, the model card, the frozen set and the plots."""
    import mlflow

    mlflow.log_dict(result.config.model_dump(mode="json"), "config.json")
    mlflow.log_dict(
        {"train": result.fingerprint, "frozen": result.frozen_fingerprint}, "data/fingerprint.json"
    )
    mlflow.log_dict(result.metrics, "metrics/all.json")
    mlflow.log_dict({"candidates": result.candidates}, "metrics/candidates.json")
    mlflow.log_dict(result.metrics.get("frozen_per_source", {}), "metrics/per_source.json")
    mlflow.log_dict(library_versions(), "environment/libraries.json")
    mlflow.log_text(model_card(result), "model_card.md")
    head = result.metrics.get("abuse_head", {})
    if "table_markdown" in head:
        mlflow.log_text(head["table_markdown"], "metrics/abuse_left_out.md")
    relevance = result.metrics.get("relevance", {})
    if "table_markdown" in relevance:
        mlflow.log_text(relevance["table_markdown"], "metrics/relevance_out_of_fold.md")
    frozen_path = workdir / Path(FROZEN_ARTIFACT).name
    write_jsonl(result.frozen_records, frozen_path)
    mlflow.log_artifact(str(frozen_path), FROZEN_DIR)
    for plot in plots(result, workdir):
        mlflow.log_artifact(str(plot), "plots")


def _register_model(result: TrainResult) -> str:
    """Log the Pipeline as an MLflow sklearn model and register it; returns the new version."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    example = to_frame(result.frozen_records[:3] or [])[["text", "article_title", "article_text"]]
    signature = None
    if len(example):
        signature = infer_signature(example, result.pipeline.predict_proba(example))
    info = mlflow.sklearn.log_model(
        result.pipeline,
        name="model",
        serialization_format="pickle",
        signature=signature,
        input_example=example if len(example) else None,
        registered_model_name=result.config.registered_model,
        pip_requirements=[
            f"{p}=={v}" for p, v in library_versions().items() if p not in ("python", "raqib", "mlflow")
        ],
    )
    return str(info.registered_model_version)


def _log_bundle(result: TrainResult, version: str, run_id: str, directory: Path) -> None:
    """The serving bundle of this version as run artifacts under `bundle/`."""
    import mlflow

    metadata = bundle_metadata(result) | {"version": version, "run_id": run_id}
    write_bundle(result.pipeline, metadata, directory)
    mlflow.log_artifacts(str(directory), BUNDLE_DIR)
