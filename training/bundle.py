"""Write a serving bundle: the joblib-pickled Pipeline plus metadata carrying its sha256."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from serving.model import METADATA_FILE, MODEL_FILE, sha256_file


def write_bundle(pipeline: Any, metadata: dict[str, Any], output: str | Path) -> dict[str, Any]:
    """Dump the Pipeline and its metadata into `output`, replacing it in one rename."""
    import joblib

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata)
    metadata.setdefault("labels", [str(c) for c in pipeline.classes_])
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
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
