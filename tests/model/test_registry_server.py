"""A server resolves `models:/` from an MLflow tracking server over HTTP, never through training code."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.model, pytest.mark.slow]


@contextmanager
def running_mlflow_server(tmp_path: Path, backend_store_uri: str) -> Iterator[str]:
    """`mlflow server` on loopback with `backend_store_uri` and a local artifact root, stopped at the end."""
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # No background job runner: these tests need the registry and artifacts, and the runner's
    # worker processes cost seconds of start-up on a 2-core machine.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"mlflow server did not start: {(tmp_path / 'mlflow-server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A tracking server with a SQLite backend (one machine)."""
    with running_mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}") as url:
        yield url


def test_a_server_fetches_the_champion_from_the_tracking_server_once(
    mlflow_server: str, starter_result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.settings import Settings
    from training.registry.gate import promote
    from training.registry.tracking import log_and_register

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    try:
        name = starter_result.config.registered_model
        registered = log_and_register(starter_result, tmp_path)
        promote(name, root=tmp_path)
    finally:
        mlflow.set_tracking_uri("")
    state = tmp_path / "state"
    settings = Settings(
        model_uri=f"models:/{name}@champion",
        registry_url=mlflow_server,
        state_dir=state,
        model_dir=tmp_path / "nowhere",
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/model").json()["version"] == registered.version
        scored = client.post("/v1/score", json={"comment": {"text": "الله يلعنكم يا كلاب"}}).json()
        assert scored["model"]["version"] == registered.version
        # A reload looks the alias up again but downloads nothing: the version is cached.
        cached = list((state / "models").rglob("metadata.json"))
        assert len(cached) == 1
        mtime = cached[0].stat().st_mtime_ns
        assert client.app.state.service.models.load().version == registered.version
        assert cached[0].stat().st_mtime_ns == mtime


def test_a_local_registry_store_is_refused_with_the_deploy_step_named(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.settings import Settings

    settings = Settings(
        model_uri="models:/raqib-moderator@champion",
        registry_url=f"sqlite:///{tmp_path / 'mlflow.db'}",
        state_dir=tmp_path / "state",
        model_dir=tmp_path / "nowhere",
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "raqib export --alias champion" in ready.text


def test_an_unknown_alias_on_the_tracking_server_leaves_the_server_up_and_not_ready(
    mlflow_server: str, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.settings import Settings

    settings = Settings(
        model_uri="models:/no-such-model@champion",
        registry_url=mlflow_server,
        state_dir=tmp_path / "state",
        model_dir=tmp_path / "nowhere",
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "registry answered" in ready.text


@pytest.mark.postgres
@pytest.mark.integration
def test_train_and_promote_through_a_tracking_server_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The production recipe: `mlflow server` on PostgreSQL, `raqib train` and `raqib promote` against it
    through MLFLOW_TRACKING_URI, and a Raqib server resolving `models:/raqib-moderator@champion`."""
    from fastapi.testclient import TestClient

    from serving.api.app import create_app
    from serving.settings import Settings

    repo = Path(__file__).resolve().parents[2]
    raqib = Path(sys.executable).with_name("raqib")
    with running_mlflow_server(tmp_path, postgres_url) as tracking:
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
        for command in (
            [str(raqib), "train", "--config", "experiments/starter.toml"],
            [str(raqib), "promote"],
        ):
            done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "promoted" in done.stdout
        settings = Settings(
            model_uri="models:/raqib-moderator@champion",
            registry_url=tracking,
            state_dir=tmp_path / "state",
            model_dir=tmp_path / "nowhere",
        )
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").status_code == 200
            scored = client.post("/v1/score", json={"comment": {"text": "اربح المال الآن راسلني واتساب"}})
            assert scored.status_code == 200 and scored.json()["model"]["name"] == "raqib-moderator"
