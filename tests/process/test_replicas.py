"""Two `raqib serve` replicas on one PostgreSQL store: one scores, the other takes the verdict.

What a site that outgrows one machine relies on: any replica may answer any request, the training
export sees what every replica recorded, and reloading the model on one leaves the other answering.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.store.store import Store
from tests.conftest import REPO, clean_env, free_port, wait_until

pytestmark = [pytest.mark.process, pytest.mark.postgres]

API_KEY = "replica-key"
ADMIN_KEY = "replica-admin-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
COMMENT = "يا حمار يا جاهل اسكت، الحكومة لن تفعل شيئا"
RAQIB = Path(sys.executable).with_name("raqib")


class Replica:
    """One `raqib serve` process on loopback."""

    def __init__(self, name: str, bundle: Path, store_url: str):
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = clean_env(
            RAQIB_MODEL_DIR=str(bundle),
            RAQIB_STORE_URL=store_url,
            RAQIB_API_KEYS=API_KEY,
            RAQIB_ADMIN_KEY=ADMIN_KEY,
            RAQIB_LOG_LEVEL="WARNING",
        )
        self.process = subprocess.Popen(
            [str(RAQIB), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def ready(self) -> bool:
        assert self.process.poll() is None, f"replica {self.name} exited:\n{self.stop()}"
        return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200

    def stop(self) -> str:
        """Stop it and return what it logged."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            output, _ = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output or ""


@pytest.fixture
def replicas(tiny_bundle: Path, postgres_url: str) -> Iterator[tuple[Replica, Replica]]:
    # Create the tables once, before either replica opens the store: two processes creating the
    # same schema at the same moment is a deployment's migration step, not what this test is about.
    Store.open(postgres_url).close()
    started = (Replica("A", tiny_bundle, postgres_url), Replica("B", tiny_bundle, postgres_url))
    try:
        for replica in started:
            assert wait_until(replica.ready, 90), f"replica {replica.name} never became ready"
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_two_replicas_share_one_postgresql_store(
    replicas: tuple[Replica, Replica], postgres_url: str, tmp_path: Path
) -> None:
    a, b = replicas
    scored = httpx.post(
        f"{a.base}/v1/score",
        headers=AUTH,
        json={"comment": {"id": "c-replica", "text": COMMENT}, "site": "news"},
        timeout=30,
    )
    assert scored.status_code == 200, scored.text
    # The verdict reaches the other replica, with no text: the export finds it in A's audit row.
    verdict = httpx.post(
        f"{b.base}/v1/feedback",
        headers=AUTH,
        json={"comment_id": "c-replica", "site": "news", "label": "abusive", "moderator": "mod-1"},
        timeout=30,
    )
    assert verdict.status_code == 201, verdict.text

    output = tmp_path / "feedback.jsonl"
    exported = subprocess.run(
        [str(RAQIB), "feedback", "export", "--store-url", postgres_url, "-o", str(output)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [(r["comment_id"], r["site"], r["label"], r["text"]) for r in records] == [
        ("c-replica", "news", "abusive", COMMENT)
    ]

    # Reload the model on A while B is being asked to score: B answers every request throughout.
    answers: list[int] = []
    stop = threading.Event()

    def keep_scoring() -> None:
        with httpx.Client(base_url=b.base, headers=AUTH, timeout=30) as client:
            n = 0
            while not stop.is_set() or n < 5:
                n += 1
                body = {"comment": {"id": f"c-during-{n}", "text": COMMENT}, "site": "news"}
                answers.append(client.post("/v1/score", json=body).status_code)

    scorer = threading.Thread(target=keep_scoring, daemon=True)
    scorer.start()
    try:
        reloaded = httpx.post(
            f"{a.base}/v1/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
        )
    finally:
        stop.set()
        scorer.join(timeout=60)
    assert reloaded.status_code == 200, reloaded.text
    assert answers and set(answers) == {200}, answers
    after = httpx.post(f"{a.base}/v1/score", headers=AUTH, json={"comment": {"text": COMMENT}}, timeout=30)
    assert after.status_code == 200, after.text
