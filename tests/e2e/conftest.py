"""A real uvicorn server over the tiny bundle, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port, uvicorn_command

CHROMIUM = Path(os.environ.get("RAQIB_CHROMIUM", "/usr/bin/chromium"))
# Debian's browser, not a Playwright download: nothing is fetched at test time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
API_KEY = "e2e-api-key"
MODERATOR = "Amira"
MODERATOR_KEY = "e2e-moderator-key-amira"


def browser_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set RAQIB_CHROMIUM)"
    return None


@dataclass(frozen=True)
class Server:
    """A running service: where it answers and where its store lives."""

    base_url: str
    store_url: str
    log: Path

    def call(self, method: str, path: str, body: Any) -> Any:
        """A JSON request with the API key; the decoded answer."""
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            method=method,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the server exited ({process.returncode}):\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {seconds:.0f} s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def server(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn in a subprocess on a free loopback port, with the tiny bundle and a fresh state dir."""
    reason = browser_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("e2e-state")
    log = state / "server.log"
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAQIB_")}
    env.update(
        RAQIB_MODEL_DIR=str(tiny_bundle),
        RAQIB_STATE_DIR=str(state),
        RAQIB_API_KEYS=API_KEY,
        RAQIB_MODERATOR_KEYS=f"{MODERATOR}:{MODERATOR_KEY}",
        RAQIB_SESSION_SECRET="e2e-session-secret",
        RAQIB_LOG_LEVEL="WARNING",
    )
    command = uvicorn_command(port)
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, process, log)
        yield Server(base_url=base_url, store_url=f"sqlite:///{state / 'raqib.db'}", log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    """Headless Chromium (Debian's), launched once per module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """tests/artifacts/ (git-ignored), for screenshots a person can look at after the run."""
    path = REPO / "tests" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_screenshot(source: Path, target: Path) -> None:
    """Copy a screenshot to a committed location (only when RAQIB_UPDATE_SCREENSHOT=1)."""
    if os.environ.get("RAQIB_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(source, target)
