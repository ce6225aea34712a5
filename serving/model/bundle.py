"""A serving bundle on disk: the joblib-pickled Pipeline and metadata.json carrying its sha256.

Both sides write bundles (`raqib export`, and the server when it caches a registry version) and the
server reads them; unpickling happens only after the checksum matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"


class BundleError(RuntimeError):
    """A model bundle that is missing, corrupt or fails its checksum."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_bundle_metadata(bundle_dir: str | Path) -> dict[str, Any]:
    """The bundle's metadata.json, or BundleError saying what is wrong."""
    path = Path(bundle_dir) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"no {METADATA_FILE} in {bundle_dir}") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"unreadable {path}: {exc}") from None
    for key in ("name", "version", "labels", "thresholds", "sha256"):
        if key not in metadata:
            raise BundleError(f"{path} lacks '{key}'")
    return metadata


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
