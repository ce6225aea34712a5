"""A 2xx from /v1/feedback means the record is on disk: SIGKILL the server mid-stream and look."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving.store.engine import DB_FILE, default_store_url
from serving.store.store import Store
from tests.conftest import REPO, free_port, uvicorn_command

pytestmark = pytest.mark.process

WRITERS = 4
ACKNOWLEDGED_BEFORE_KILL = 150


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAQIB_") or k == "RAQIB_SHARED"}
    env.update(extra)
    return env


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server never became ready")


def test_every_acknowledged_feedback_survives_sigkill(tiny_bundle: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        uvicorn_command(port),
        cwd=REPO,
        env=_env(RAQIB_MODEL_DIR=str(tiny_bundle), RAQIB_STATE_DIR=str(state), RAQIB_LOG_LEVEL="WARNING"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    acknowledged: list[str] = []
    sent = 0
    lock = threading.Lock()
    stop = threading.Event()

    def write(worker: int) -> None:
        nonlocal sent
        with httpx.Client(base_url=base, timeout=5) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                comment_id = f"w{worker}-{n}"
                body = {
                    "comment_id": comment_id,
                    "label": "spam",
                    "site": "news",
                    "comment": "اتصل 0551234567",
                }
                with lock:
                    sent += 1
                try:
                    response = client.post("/v1/feedback", json=body)
                except httpx.HTTPError:
                    return  # the server is gone: this record was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(comment_id)

    try:
        _wait_ready(base, server, timeout=60)
        threads = [threading.Thread(target=write, args=(k,), daemon=True) for k in range(WRITERS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 15
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.005)
        # Mid-stream: every writer has a request in flight when the process dies.
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
            server.wait()
    for thread in threads:
        thread.join(timeout=10)

    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL, f"only {len(acknowledged)} acknowledged"
    assert sent > len(acknowledged)  # some requests were cut off unanswered
    db = state / DB_FILE
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = Store.open(default_store_url(state))
    try:
        stored = {record.comment_id for record in store.feedback_since()}
    finally:
        store.close()
    missing = sorted(set(acknowledged) - stored)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
