"""The service as a process: clean imports, uvicorn factory start-up, SIGHUP reload."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.model.bundle import METADATA_FILE
from tests.conftest import REPO, clean_env, free_port, uvicorn_command, wait_until

pytestmark = pytest.mark.process

NO_HEAVY_IMPORTS = (
    "assert 'mlflow' not in sys.modules, 'mlflow imported';"
    "assert not [m for m in sys.modules if m == 'training' or m.startswith('training.')], 'training imported'"
)


def test_importing_the_app_imports_neither_mlflow_nor_training() -> None:
    code = f"import serving.api.app, sys; {NO_HEAVY_IMPORTS}"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=clean_env(), timeout=60)


def test_serving_a_request_imports_neither_mlflow_nor_training(tiny_bundle: Path) -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from serving.api.app import create_app\n"
        "with TestClient(create_app()) as client:\n"
        "    r = client.post('/v1/score', json={'comment': {'text': 'اتصل 0551234567'}})\n"
        "    assert r.status_code == 200, r.text\n"
        "    assert client.get('/readyz').status_code == 200\n"
        f"{NO_HEAVY_IMPORTS}\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=REPO,
        timeout=60,
        env=clean_env(RAQIB_MODEL_DIR=str(tiny_bundle)),
    )


def test_uvicorn_factory_serves_and_reloads_on_sighup(bundle_copy: Path, tiny_pipeline: Any) -> None:
    from serving.model.bundle import write_bundle

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        uvicorn_command(port),
        cwd=REPO,
        env=clean_env(RAQIB_MODEL_DIR=str(bundle_copy), RAQIB_API_KEYS="proc-key"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60), "never ready"
        headers = {"Authorization": "Bearer proc-key"}
        assert httpx.get(f"{base}/v1/model", headers=headers).json()["version"] == "0-test"

        metadata = json.loads((bundle_copy / METADATA_FILE).read_text(encoding="utf-8"))
        metadata.pop("sha256")
        metadata["version"] = "9-sighup"
        write_bundle(tiny_pipeline, metadata, bundle_copy)
        server.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            return bool(httpx.get(f"{base}/v1/model", headers=headers).json()["version"] == "9-sighup")

        assert wait_until(reloaded, 30), "SIGHUP did not reload the model"
        assert server.poll() is None, "SIGHUP must not stop the server"
        assert 'raqib_model_reloads_total{outcome="success"} 1.0' in httpx.get(f"{base}/metrics").text
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert "proc-key" not in output
    assert "model reload (SIGHUP): now serving raqib-moderator 9-sighup" in output
