"""Fetch a registered model version's bundle from an MLflow tracking server, over plain HTTP.

The server never imports mlflow nor runs training code: `raqib train` logs the complete serving
bundle (model.joblib and metadata.json with its sha256) as run artifacts under `bundle/`, and this
module asks the tracking server's REST API which version an alias names, downloads those two files,
verifies the checksum and keeps the bundle under `state_dir/models/NAME/VERSION`. A version is
immutable, so one already cached is never fetched again; an alias is looked up on every (re)load.

With a local MLflow store (SQLite file) there is no HTTP API: the operator exports the bundle at
deploy time (`raqib export --alias champion -o DIR`) and serves DIR with `model_dir`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from serving.model.bundle import METADATA_FILE, MODEL_FILE, BundleError, read_bundle_metadata, sha256_file
from serving.schema import ModelUri, ModelUriError, parse_model_uri

BUNDLE_ARTIFACT_DIR = "bundle"
TIMEOUT_SECONDS = 30.0
MAX_BUNDLE_BYTES = 1 << 30  # a bundle is tens of MB; a gigabyte means something else is answering

LOCAL_STORE_HINT = (
    "models:/ URIs are fetched from an MLflow tracking server over HTTP: set MLFLOW_TRACKING_URI "
    "(or RAQIB_REGISTRY_URL) to http://HOST:PORT. With a local MLflow store, export the bundle at "
    "deploy time instead: raqib export --alias champion -o models/champion, and serve that "
    "directory (RAQIB_MODEL_DIR)"
)


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value) or "_"


class RegistryClient:
    """The few MLflow REST calls a server needs: alias → version, version → run, run artifact bytes."""

    def __init__(self, base_url: str, timeout: float = TIMEOUT_SECONDS):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str], limit: int) -> bytes:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                data: bytes = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            raise BundleError(
                f"registry answered {exc.code} for {path}: {' '.join(detail.split())}"
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise BundleError(f"registry at {self.base_url} unreachable: {exc}") from None
        if len(data) > limit:
            raise BundleError(f"registry answer for {path} is larger than {limit} bytes")
        return data

    def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            value = json.loads(self._get(path, params, 1 << 20))
        except ValueError:
            raise BundleError(f"registry answer for {path} is not JSON") from None
        if not isinstance(value, dict):
            raise BundleError(f"registry answer for {path} is not a JSON object")
        return value

    def model_version(self, uri: ModelUri) -> tuple[str, str]:
        """(version, run_id) of the version the URI names."""
        if uri.alias is not None:
            answer = self._get_json(
                "/api/2.0/mlflow/registered-models/alias", {"name": uri.name, "alias": uri.alias}
            )
        else:
            answer = self._get_json(
                "/api/2.0/mlflow/model-versions/get", {"name": uri.name, "version": str(uri.version)}
            )
        version = answer.get("model_version") or {}
        if not version.get("version") or not version.get("run_id"):
            raise BundleError(f"registry has no run for {uri}")
        return str(version["version"]), str(version["run_id"])

    def artifact(self, run_id: str, path: str) -> bytes:
        """One run artifact's bytes (the tracking server proxies or reads its artifact store)."""
        return self._get("/get-artifact", {"path": path, "run_uuid": run_id}, MAX_BUNDLE_BYTES)


def fetch_registered_bundle(model_uri: str, registry_url: str | None, state_dir: Path) -> Path:
    """The verified bundle directory of `model_uri`, fetched once per version into `state_dir`."""
    try:
        uri = parse_model_uri(model_uri)
    except ModelUriError as exc:
        raise BundleError(str(exc)) from None
    if not registry_url or not registry_url.startswith(("http://", "https://")):
        raise BundleError(f"cannot resolve {model_uri}: {LOCAL_STORE_HINT}")
    client = RegistryClient(registry_url)
    version, run_id = client.model_version(uri)
    models_dir = state_dir / "models" / _safe_name(uri.name)
    target = models_dir / _safe_name(version)
    if (target / METADATA_FILE).is_file():
        return target  # versions never change; the checksum is verified again when the model loads
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=models_dir))
    try:
        bundle = staging / "bundle"
        bundle.mkdir()
        for name in (METADATA_FILE, MODEL_FILE):
            (bundle / name).write_bytes(client.artifact(run_id, f"{BUNDLE_ARTIFACT_DIR}/{name}"))
        metadata = read_bundle_metadata(bundle)
        if sha256_file(bundle / MODEL_FILE) != metadata["sha256"]:
            raise BundleError(f"{model_uri}: the fetched {MODEL_FILE} does not match its sha256")
        metadata["source_uri"] = model_uri
        (bundle / METADATA_FILE).write_text(
            json.dumps(metadata, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        bundle.chmod(0o755)
        try:
            bundle.rename(target)
        except OSError:
            if not (target / METADATA_FILE).is_file():  # another worker may have cached it first
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
