"""`make bench`: speed figures of the exported champion, written to experiments/RESULTS.md.

Measured here so far: single in-process scoring latency, one-thread batch throughput, server cold
start and memory, bundle size. Not yet measured (stated in the report, never guessed): fastText
side by side, HTTP throughput against a bare FastAPI endpoint, training time on the full public
build, and the Dask engine.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

RESULTS = Path("experiments/RESULTS.md")


def _comments(limit: int = 2000) -> list[dict[str, Any]]:
    """Starter comments joined to their articles: realistic lengths, Arabic and English."""
    from training.data import load_starter

    records = load_starter("data/starter")
    rows = [
        {"text": r.text, "article_title": r.article_title, "article_text": r.article_text} for r in records
    ]
    return (rows * (limit // len(rows) + 1))[:limit]


def single_latency(bundle: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median and p99 of one `ModerationModel.score` call with explanations, in ms."""
    from serving.model import CommentInput, ModerationModel

    model = ModerationModel.from_bundle(bundle)
    items = [CommentInput(**row) for row in rows[:500]]
    for item in items[:50]:
        model.score([item])
    timings = []
    for item in items:
        started = time.perf_counter()
        model.score([item])
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"median_ms": statistics.median(timings), "p99_ms": timings[int(len(timings) * 0.99) - 1]}


def batch_throughput(bundle: Path, rows: list[dict[str, Any]], batch: int = 500) -> dict[str, float]:
    """Comments per second scoring batches on one thread (BLAS limited to one thread)."""
    from threadpoolctl import threadpool_limits

    from serving.model import CommentInput, ModerationModel

    model = ModerationModel.from_bundle(bundle)
    items = [CommentInput(**row) for row in rows]
    with threadpool_limits(limits=1):
        model.score(items[:batch], explain=False)
        started = time.perf_counter()
        for i in range(0, len(items), batch):
            model.score(items[i : i + batch], explain=False)
        seconds = time.perf_counter() - started
    return {"comments_per_s": len(items) / seconds, "batch": batch}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cold_start(bundle: Path) -> dict[str, float]:
    """Seconds from process start to /readyz 200, and the server's RSS then."""
    port = _free_port()
    env = dict(os.environ, RAQIB_MODEL_DIR=str(bundle), RAQIB_STATE_DIR=tempfile.mkdtemp(prefix="bench-"))
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "serving.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = started + 60
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    finally:
        process.terminate()
        process.wait(timeout=10)
    return {"seconds": seconds, "rss_mb": rss_kb / 1024}


def _verdict(value: float, goal: float, lower_is_better: bool = True) -> str:
    met = value <= goal if lower_is_better else value >= goal
    if met:
        return "met"
    ratio = value / goal if lower_is_better else goal / value
    return f"missed ({ratio:.1f}× the goal)"


def main(bundle: str = "models/champion") -> None:
    """Run the benchmarks and write experiments/RESULTS.md."""
    path = Path(bundle)
    if not (path / "model.joblib").is_file():
        raise SystemExit(f"no bundle at {path}: run `make demo` (or raqib train/promote/export) first")
    metadata = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    rows = _comments()
    single = single_latency(path, rows)
    throughput = batch_throughput(path, rows)
    start = cold_start(path)
    size_mb = (path / "model.joblib").stat().st_size / 1e6
    lines = [
        "# Benchmarks",
        "",
        f"Model: {metadata.get('name')} version {metadata.get('version')} "
        f"({metadata.get('experiment')}), bundle {size_mb:.1f} MB. Machine: {os.cpu_count()} cores. "
        f"Reproduce: `make bench`.",
        "",
        "| measure | value | goal | verdict |",
        "|---|---|---|---|",
        f"| single in-process score (with explanations), median | {single['median_ms']:.2f} ms | ≤ 0.5 ms | "
        f"{_verdict(single['median_ms'], 0.5)} |",
        f"| single in-process score, p99 | {single['p99_ms']:.2f} ms | — | — |",
        f"| batch scoring, one thread | {throughput['comments_per_s']:.0f} comments/s | ≥ fastText | "
        "fastText not yet measured side by side |",
        f"| server cold start to ready | {start['seconds']:.2f} s | ≤ 3 s | "
        f"{_verdict(start['seconds'], 3)} |",
        f"| server RSS when ready | {start['rss_mb']:.0f} MB | ≤ 300 MB | {_verdict(start['rss_mb'], 300)} |",
        "",
        "Not measured yet: fastText on the same comments, `/v1/score` against a bare FastAPI endpoint under",
        "load, training time and peak memory on the full public build, the Dask engine.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:2])
