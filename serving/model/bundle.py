"""Write a serving bundle (the joblib-pickled Pipeline plus metadata carrying its sha256).

It lives in serving/ because both sides write bundles: `raqib export` after training, and the
server when it caches a registry model named by RAQIB_MODEL_URI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from serving.model.moderation import METADATA_FILE, MODEL_FILE, sha256_file


def write_bundle(pipeline: Any, metadata: dict[str, Any], output: str | Path) -> dict[str, Any]:
    """Dump the Pipeline and its metadata into `output`, replacing it in one rename."""
    import joblib

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata)
    metadata.setdefault("labels", [str(c) for c in pipeline.classes_])
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a server running as another user must read it
    previous = output.with_name(output.name + ".previous")
    try:
        joblib.dump(pipeline, staging / MODEL_FILE)
        metadata["sha256"] = sha256_file(staging / MODEL_FILE)
        (staging / METADATA_FILE).write_text(
            json.dumps(metadata, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        # A server reloading mid-export sees the old bundle or the new one, never half of one.
        if output.exists():
            shutil.rmtree(previous, ignore_errors=True)
            output.rename(previous)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)
    return metadata


def default_tracking_uri(root: str | Path = ".") -> str:
    """The MLflow store: MLFLOW_TRACKING_URI, else sqlite under <root>/experiments/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (
        f"sqlite:///{(Path(root) / 'experiments' / 'mlflow.db').resolve()}"
    )
