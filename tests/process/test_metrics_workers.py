"""`raqib serve --workers N`: /metrics counts the whole server, whichever worker answers the scrape."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, SPAM, clean_env, free_port, wait_until

# Starting two-worker servers takes a minute on 2 cores: a CI step of its own (make check-integration).
pytestmark = [pytest.mark.process, pytest.mark.integration]

SCORED = 20
# Enough requests that the kernel hands each worker some, however it spreads new connections.
MAX_REQUESTS = 400
DECISIONS = re.compile(r"^raqib_decisions_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)
SCORE_OK = re.compile(
    r'^raqib_requests_total\{method="POST",route="/v1/score",status="200"\} ([0-9.e+]+)$', re.MULTILINE
)


@contextmanager
def raqib_serve(bundle: Path, tmp: Path, workers: int) -> Iterator[str]:
    """`raqib serve` on a free loopback port; yields its base URL and stops it (SIGTERM) afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "training.cli", "serve", "--port", str(port), "--workers", str(workers)]
    env = clean_env(RAQIB_MODEL_DIR=str(bundle), RAQIB_LOG_LEVEL="WARNING", TMPDIR=str(tmp))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 90), "never ready"
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
        # uvicorn shuts down gracefully, then one worker in the same process re-raises the SIGTERM.
        assert server.returncode in (0, -signal.SIGTERM), output.decode(errors="replace")


def score(base: str) -> None:
    # A new connection each time (no shared client), so the workers take turns accepting.
    response = httpx.post(f"{base}/v1/score", json={"comment": {"text": SPAM[0]}})
    assert response.status_code == 200, response.text


def total(pattern: re.Pattern[str], text: str) -> float:
    return sum(float(value) for value in pattern.findall(text))


def worker_decisions(metrics_dir: Path) -> dict[str, float]:
    """Each worker's own count of decisions, read from the files it shares with the others."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == "raqib_decisions_total":
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def test_two_workers_metrics_are_summed_over_both(tiny_bundle: Path, tmp_path: Path) -> None:
    with raqib_serve(tiny_bundle, tmp_path, workers=2) as base:
        (metrics_dir,) = tmp_path.glob("raqib-metrics-*")
        for _ in range(SCORED):
            score(base)
        sent = SCORED
        # Only a test where both workers answered shows that no scrape reads one worker's share.
        while len([n for n in worker_decisions(metrics_dir).values() if n > 0]) < 2 and sent < MAX_REQUESTS:
            score(base)
            sent += 1
        shares = worker_decisions(metrics_dir)
        assert len(shares) == 2 and all(0 < n < sent for n in shares.values()), shares
        # Several scrapes, each on a new connection: whichever worker answers says the same totals.
        for _ in range(6):
            text = httpx.get(f"{base}/metrics").text
            assert total(DECISIONS, text) == sent, text
            assert total(SCORE_OK, text) == sent, text
            assert "raqib_model_loaded 1.0" in text
            assert 'raqib_model_info{name="raqib-moderator",version="0-test"} 1.0' in text
            # Per-process collectors cannot be summed: the platform's info is, being the same everywhere.
            assert "python_info{" in text
            assert "process_cpu_seconds_total" not in text
    assert not list(tmp_path.glob("raqib-metrics-*")), "the metrics directory outlived the server"


def test_one_worker_exposes_process_and_python_metrics(tiny_bundle: Path, tmp_path: Path) -> None:
    with raqib_serve(tiny_bundle, tmp_path, workers=1) as base:
        for _ in range(3):
            score(base)
        text = httpx.get(f"{base}/metrics").text
        assert not list(tmp_path.glob("raqib-metrics-*")), "one worker needs no shared directory"
    assert total(DECISIONS, text) == 3
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        assert re.search(rf"^{name} ", text, re.MULTILINE), f"{name} missing"
    assert "python_info{" in text
    assert "python_gc_objects_collected_total{" in text
