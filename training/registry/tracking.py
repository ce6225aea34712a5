"""MLflow: log runs, register versions, move aliases through the gate, export serving bundles."""

from __future__ import annotations

import json
import platform
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from serving.model.bundle import default_tracking_uri as _store_uri
from serving.model.bundle import write_bundle
from training.data.contract import read_records, write_jsonl
from training.experiment.train import TrainResult

CHALLENGER = "challenger"
CHAMPION = "champion"
FROZEN_ARTIFACT = "eval/frozen.jsonl"
BUNDLE_ARTIFACT = "bundle/metadata.json"
PACKAGES = ("raqib", "scikit-learn", "numpy", "scipy", "pandas", "pyarabic", "joblib", "mlflow")


def configure(root: Path = Path(".")) -> str:
    """Point mlflow at the tracking store; returns the URI in use."""
    import mlflow

    uri = _store_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _experiment_id(name: str, root: Path) -> str:
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


def _flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float) and value is not None and np.isfinite(value):
            flat[name.replace(":", "_")] = float(value)
    return flat


def bundle_metadata(result: TrainResult) -> dict[str, Any]:
    """What serving needs beside the pickle: labels, thresholds, metrics, data fingerprint."""
    frozen = result.metrics.get("frozen", {})
    return {
        "name": result.config.registered_model,
        "labels": [str(c) for c in result.pipeline.classes_],
        "thresholds": result.thresholds,
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


def _plots(result: TrainResult, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay

    frozen = result.metrics.get("frozen")
    if not frozen or not result.frozen_records:
        return []
    paths = []
    labels = frozen["labels"]
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay(np.array(frozen["confusion_matrix"]), display_labels=labels).plot(
        ax=ax, colorbar=False, xticks_rotation=30
    )
    ax.set_title("Frozen evaluation set")
    fig.tight_layout()
    paths.append(directory / "confusion_matrix.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    from training.data.gather import to_frame

    proba = result.pipeline.predict_proba(to_frame(result.frozen_records))
    model_labels = [str(c) for c in result.pipeline.classes_]
    truth = [r.label for r in result.frozen_records]
    fig, ax = plt.subplots(figsize=(6, 5))
    for k, label in enumerate(model_labels):
        positives = np.array([t == label for t in truth])
        if 0 < positives.sum() < len(positives):
            PrecisionRecallDisplay.from_predictions(positives, proba[:, k], name=label, ax=ax)
    ax.set_title("Precision-recall per label (frozen set)")
    fig.tight_layout()
    paths.append(directory / "pr_curves.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def model_card(result: TrainResult, version: str | None = None) -> str:
    """A short markdown model card for the run."""
    frozen = result.metrics.get("frozen", {})
    lines = [
        f"# {result.config.registered_model} {('v' + version) if version else ''}".strip(),
        "",
        f"Experiment `{result.config.name}`; classifier `{result.best['kind']}` "
        f"{json.dumps(result.best['params'])}.",
        "",
        "## Data",
        f"Training rows: {result.fingerprint['rows']} (sha256 `{result.fingerprint['sha256'][:16]}…`).",
        "",
        "| source | rows |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in result.fingerprint["by_source"].items()],
        "",
        "Constructed labels: `aoc_repaired` off_topic pairs are AOC comments re-paired with another",
        "article (not human labels); context augmentation copies rows with partial/no article and",
        "places some article-less spam/abuse under a random article.",
        "",
        "## Frozen evaluation (article-grouped, never trained on)",
        f"macro-F1 {frozen.get('macro_f1', float('nan')):.3f}, accuracy "
        f"{frozen.get('accuracy', float('nan')):.3f}, ECE {frozen.get('ece', float('nan')):.3f}.",
        "",
        "| label | precision | recall | F1 | PR-AUC | support |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in frozen.get("per_class", {}).items():
        lines.append(
            f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['pr_auc']:.3f} | {m['support']} |"
        )
    lines += [
        "",
        "## Thresholds",
        "```json",
        json.dumps(result.thresholds, indent=2),
        "```",
        "",
        "## False off-topic rate on real (comment, own article) pairs",
        "```json",
        json.dumps(result.metrics.get("false_off_topic", {}), indent=2),
        "```",
        "",
        "## Corpus leakage check",
        "```json",
        json.dumps(result.metrics.get("leakage", {}), indent=2),
        "```",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RegisteredRun:
    """Where a run landed: run id and registered version."""

    run_id: str
    version: str
    tracking_uri: str


def log_and_register(
    result: TrainResult, root: Path = Path("."), config_path: str | None = None
) -> RegisteredRun:
    """Log the run (params, metrics, plots, card, data), register the model, alias challenger."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from training.data.gather import to_frame

    uri = configure(root)
    experiment_id = _experiment_id(result.config.name, root)
    metadata = bundle_metadata(result)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
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
        mlflow.log_metrics(_flat_metrics({k: v for k, v in result.metrics.items() if k != "frozen"}))
        frozen = result.metrics.get("frozen", {})
        mlflow.log_metrics(
            _flat_metrics({k: frozen[k] for k in ("accuracy", "macro_f1", "ece") if k in frozen}, "frozen.")
        )
        for label, m in frozen.get("per_class", {}).items():
            mlflow.log_metrics(_flat_metrics(m, f"frozen.{label}."))
        mlflow.set_tags(
            {
                "data.sha256": result.fingerprint["sha256"],
                "data.rows": str(result.fingerprint["rows"]),
                "frozen.sha256": result.frozen_fingerprint["sha256"],
            }
        )
        mlflow.log_dict(result.config.model_dump(mode="json"), "config.json")
        mlflow.log_dict(
            {"train": result.fingerprint, "frozen": result.frozen_fingerprint}, "data/fingerprint.json"
        )
        mlflow.log_dict(result.metrics, "metrics/all.json")
        mlflow.log_dict({"candidates": result.candidates}, "metrics/candidates.json")
        mlflow.log_dict(result.metrics.get("frozen_per_source", {}), "metrics/per_source.json")
        mlflow.log_dict(library_versions(), "environment/libraries.json")
        mlflow.log_text(model_card(result), "model_card.md")
        frozen_path = tmpdir / "frozen.jsonl"
        write_jsonl(result.frozen_records, frozen_path)
        mlflow.log_artifact(str(frozen_path), "eval")
        for plot in _plots(result, tmpdir):
            mlflow.log_artifact(str(plot), "plots")
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
        version = str(info.registered_model_version)
        metadata["version"] = version
        metadata["run_id"] = run.info.run_id
        mlflow.log_dict(metadata, BUNDLE_ARTIFACT)
    client = MlflowClient()
    client.set_registered_model_alias(result.config.registered_model, CHALLENGER, version)
    client.set_model_version_tag(result.config.registered_model, version, "run_id", run.info.run_id)
    return RegisteredRun(run_id=run.info.run_id, version=version, tracking_uri=uri)


def _version_for(client: Any, name: str, alias: str | None, version: str | None) -> Any:
    if version is not None:
        return client.get_model_version(name, str(version))
    return client.get_model_version_by_alias(name, alias or CHAMPION)


def load_version(name: str, version: str) -> Any:
    """The registered sklearn Pipeline of a version."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def _download_json(run_id: str, artifact: str) -> Any:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp)
        return json.loads(Path(path).read_text(encoding="utf-8"))


def frozen_records_of(run_id: str) -> list[Any]:
    """The frozen evaluation set a run recorded."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=FROZEN_ARTIFACT, dst_path=tmp)
        return read_records(path)


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the promotion gate."""

    promoted: bool
    challenger_version: str
    champion_version: str | None
    metric: str
    challenger_score: float | None
    champion_score: float | None
    tolerance: float
    reason: str


def evaluate_version_on(name: str, version: str, records: list[Any]) -> dict[str, Any]:
    """Metrics of a registered version on given records (labels aligned by name)."""
    from training.data.gather import to_frame
    from training.experiment.evaluate import classification_metrics

    pipeline = load_version(name, version)
    labels = sorted({r.label for r in records} | {str(c) for c in pipeline.classes_})
    proba = pipeline.predict_proba(to_frame(records))
    aligned = np.zeros((len(records), len(labels)))
    for k, label in enumerate(pipeline.classes_):
        aligned[:, labels.index(str(label))] = proba[:, k]
    return classification_metrics([r.label for r in records], aligned, labels)


def promote(
    name: str,
    *,
    version: str | None = None,
    force: bool = False,
    reason: str | None = None,
    metric: str = "macro_f1",
    tolerance: float = 0.01,
    root: Path = Path("."),
) -> GateDecision:
    """Move `champion` to the challenger (or a given version) only if it is not worse."""
    from mlflow import MlflowClient

    configure(root)
    client = MlflowClient()
    candidate = _version_for(client, name, CHALLENGER, version)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # no champion yet: mlflow raises when the alias is unset
        champion = None
    if force and not reason:
        raise ValueError("--force needs --reason: promotions that skip the gate are recorded")
    challenger_score = champion_score = None
    if champion is not None and str(champion.version) == str(candidate.version):
        return GateDecision(
            False,
            str(candidate.version),
            str(champion.version),
            metric,
            None,
            None,
            tolerance,
            "already champion",
        )
    if champion is None:
        verdict, text = True, "no champion yet"
    else:
        records = frozen_records_of(candidate.run_id)
        challenger_score = evaluate_version_on(name, str(candidate.version), records)[metric]
        champion_score = evaluate_version_on(name, str(champion.version), records)[metric]
        verdict = challenger_score >= champion_score - tolerance
        text = f"{metric} {challenger_score:.4f} vs champion {champion_score:.4f} (tolerance {tolerance})"
    if not verdict and force:
        verdict, text = True, f"forced: {reason} ({text})"
    decision = GateDecision(
        verdict,
        str(candidate.version),
        str(champion.version) if champion else None,
        metric,
        challenger_score,
        champion_score,
        tolerance,
        text,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    client.set_model_version_tag(
        name,
        candidate.version,
        f"gate.{stamp}",
        json.dumps({"promoted": verdict, "reason": text, "operator_reason": reason}),
    )
    if verdict:
        client.set_registered_model_alias(name, CHAMPION, candidate.version)
        if reason:
            client.set_model_version_tag(name, candidate.version, "promotion_reason", reason)
    return decision


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
    client = MlflowClient()
    model_version = _version_for(client, name, alias, version)
    pipeline = load_version(name, str(model_version.version))
    metadata = _download_json(model_version.run_id, BUNDLE_ARTIFACT)
    metadata["version"] = str(model_version.version)
    metadata["alias"] = alias
    metadata["exported_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return write_bundle(pipeline, metadata, output)
