"""Two `raqib serve` replicas on one PostgreSQL store: one scores, the other takes the verdict.

What a site that outgrows one machine relies on: any replica may answer any request, the training
export sees what every replica recorded, and reloading the model on one leaves the other answering.
The replicas are started as README's production recipe says — the schema migrated first with
`raqib db upgrade`, secrets from files in RAQIB_SECRETS_DIR, several workers, the reverse proxy's
address trusted for X-Forwarded-For — so every command of the recipe runs here.
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

from tests.conftest import REPO, clean_env, free_port, wait_until

pytestmark = [pytest.mark.process, pytest.mark.postgres]

API_KEY = "replica-key"
ADMIN_KEY = "replica-admin-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
COMMENT = "يا حمار يا جاهل اسكت، الحكومة لن تفعل شيئا"
RAQIB = Path(sys.executable).with_name("raqib")


class Replica:
    """One `raqib serve` process on loopback, logging to a file (a pipe nobody reads would fill up)."""

    def __init__(self, name: str, bundle: Path, secrets: Path, log: Path, *options: str):
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = clean_env(
            RAQIB_MODEL_DIR=str(bundle),
            RAQIB_SECRETS_DIR=str(secrets),
            RAQIB_LOG_LEVEL="INFO",
            RAQIB_LOG_FORMAT="text",
        )
        command = [str(RAQIB), "serve", "--host", "127.0.0.1", "--port", str(self.port), *options]
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    def ready(self) -> bool:
        assert self.process.poll() is None, f"replica {self.name} exited:\n{self.stop()}"
        return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200

    def stop(self) -> str:
        """Stop it and return what it logged."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.logged()

    def logged(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def secrets_dir(root: Path, store_url: str) -> Path:
    """Docker/Kubernetes-style secrets: one file per setting, readable by the server's user only."""
    secrets = root / "secrets"
    secrets.mkdir()
    for name, value in {
        "raqib_api_keys": API_KEY,
        "raqib_admin_key": ADMIN_KEY,
        "raqib_store_url": store_url,
    }.items():
        (secrets / name).write_text(value + "\n", encoding="utf-8")
        (secrets / name).chmod(0o600)
    return secrets


@pytest.fixture
def replicas(tiny_bundle: Path, postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    # The recipe's first step: the schema is migrated once, before any replica starts (two replicas
    # creating it at the same moment would race).
    secrets = secrets_dir(tmp_path, postgres_url)
    migrated = subprocess.run(
        [str(RAQIB), "db", "upgrade"],  # the store's URL from the secrets, as the servers read it
        cwd=REPO,
        env=clean_env(RAQIB_SECRETS_DIR=str(secrets)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "upgraded an empty database → " in migrated.stdout
    started = (
        # Behind a proxy on this host: its X-Forwarded-For is believed.
        Replica(
            "A",
            tiny_bundle,
            secrets,
            tmp_path / "a.log",
            "--workers",
            "2",
            "--forwarded-allow-ips",
            "127.0.0.1",
        ),
        # Trusting only a proxy elsewhere: a loopback client's X-Forwarded-For is not.
        Replica("B", tiny_bundle, secrets, tmp_path / "b.log", "--forwarded-allow-ips", "10.9.9.9"),
    )
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
        headers={**AUTH, "X-Forwarded-For": "203.0.113.7"},
        json={"comment": {"id": "c-replica", "text": COMMENT}, "site": "news"},
        timeout=30,
    )
    assert scored.status_code == 200, scored.text
    assert wait_until(lambda: "POST /v1/score 200" in a.logged() and "client=203.0.113.7" in a.logged(), 10)
    # The verdict reaches the other replica, with no text: the export finds it in A's audit row.
    verdict = httpx.post(
        f"{b.base}/v1/feedback",
        headers={**AUTH, "X-Forwarded-For": "203.0.113.8"},
        json={"comment_id": "c-replica", "site": "news", "label": "abusive", "moderator": "mod-1"},
        timeout=30,
    )
    assert verdict.status_code == 201, verdict.text
    assert wait_until(lambda: "POST /v1/feedback 201" in b.logged(), 10)
    assert "client=127.0.0.1" in b.logged() and "203.0.113.8" not in b.logged()

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
