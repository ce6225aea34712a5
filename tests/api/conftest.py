"""Fixtures for HTTP-level tests: apps over the tiny bundle, built from explicit settings."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.settings import Settings

API_KEY = "test-key-1"
OTHER_API_KEY = "test-key-2"
ADMIN_KEY = "test-admin-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

MakeClient = Callable[..., TestClient]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's RAQIB_* variables must not change what a test's settings say."""
    for name in list(os.environ):
        if name.startswith("RAQIB_") and name != "RAQIB_SHARED":
            monkeypatch.delenv(name)


@pytest.fixture
def make_client(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeClient]:
    """Build a started TestClient (lifespan run, model loaded) from settings overrides."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "model_dir": tiny_bundle,
            "api_keys": [API_KEY],
            "admin_key": ADMIN_KEY,
            # Each app gets its own store, never the working directory's var/.
            "state_dir": tmp_path_factory.mktemp("state"),
        }
        values.update(overrides)
        client = TestClient(create_app(Settings(**values)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    """A client over the tiny bundle with one API key and an admin key."""
    return make_client()
