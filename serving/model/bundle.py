"""A serving bundle on disk: the pickled Pipeline and metadata.json carrying its sha256.

Both sides write bundles (`raqib export`, and the server when it caches a registry version) and the
server reads them; unpickling happens only after the checksum matches.

The model file keeps its name, `model.joblib`, but is written as a plain pickle (protocol 5) and
metadata.json says so (`"model_format": "pickle"`): Python's C unpickler reads the champion's 56 MB
in ~0.12 s where joblib's pure-Python unpickler took ~0.78 s, most of a server's cold start after
its imports. joblib can still read the new files, and bundles written before (no `model_format`)
are still read with joblib.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
# metadata.json's "model_format" for a model file written by `pickle` (absent: written by joblib).
PICKLE_FORMAT = "pickle"


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
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = dict(metadata)
    metadata.setdefault("labels", [str(c) for c in pipeline.classes_])
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a server running as another user must read it
    previous = output.with_name(output.name + ".previous")
    try:
        with (staging / MODEL_FILE).open("wb") as handle:
            pickle.dump(pipeline, handle, protocol=5)
        metadata["model_format"] = PICKLE_FORMAT
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


def load_verified_model(model_path: Path, metadata: dict[str, Any]) -> Any:
    """The unpickled model file, after its bytes matched metadata's sha256; BundleError otherwise."""
    if metadata.get("model_format") != PICKLE_FORMAT:
        actual = sha256_file(model_path)
        _check_sha256(model_path, actual, metadata)
        import joblib

        return _unpickle(model_path, lambda: joblib.load(model_path))
    # One read: the bytes that were hashed are the bytes unpickled.
    data = model_path.read_bytes()
    _check_sha256(model_path, hashlib.sha256(data).hexdigest(), metadata)
    return _unpickle(model_path, lambda: pickle.loads(data))


def _check_sha256(model_path: Path, actual: str, metadata: dict[str, Any]) -> None:
    if actual != metadata["sha256"]:
        raise BundleError(
            f"{model_path} sha256 {actual[:12]}… does not match metadata "
            f"{str(metadata['sha256'])[:12]}…; refusing to unpickle"
        )


def _unpickle(model_path: Path, load: Any) -> Any:
    try:
        return load()
    except Exception as exc:  # a truncated or foreign pickle raises many kinds
        raise BundleError(f"cannot unpickle {model_path}: {exc.__class__.__name__}: {exc}") from None
