"""`make soak`: a bounded soak test of `raqib serve` on loopback, written into experiments/RESULTS.md.

Two phases against one server with 2 workers on the champion, each `--seconds` long (default 60)
at a fixed `--rate` (default 200 requests/s, open loop, training.bench.loadgen) on /v1/score:

1. steady load: failed requests (non-2xx, connection errors, timeouts), p50/p99;
2. the same load while the model is reloaded every 5 s: SIGHUP to every worker process (found as
   the server's children in /proc), so both workers reload each time, plus one POST
   /v1/admin/reload (admin key set through the environment) in the middle of the phase. The server
   log is checked afterwards: every reload must have happened and none may have failed.

Goal: 0 failed requests in both phases. Only the soak section of RESULTS.md is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.schema import DEFAULT_BUNDLE_DIR
from training.bench.http import (
    SCORE_PATH,
    ServerProcess,
    child_pids,
    free_port,
    generator_lag_warning,
    post,
    rss_mb,
    score_bodies,
    server_env,
)
from training.bench.loadgen import OPEN, command, parse_output, write_bodies
from training.bench.report import (
    Goal,
    Section,
    header_lines,
    log_to_mlflow,
    measured_on,
    model_label,
    write_results,
)

SOAK_ADMIN_KEY = "soak-admin-key"
READY_LINE = re.compile(r"serving \S+ \S+ from ")
SIGHUP_RELOAD = re.compile(r"model reload \(SIGHUP\): now serving")
ADMIN_RELOAD = re.compile(r"model reload \(admin endpoint\): now serving")
FAILED_RELOAD = re.compile(r"model reload \([^)]*\) failed")


def worker_pids(server_pid: int) -> list[int]:
    """uvicorn's worker processes: the server's children started by multiprocessing's spawn."""
    workers = []
    for pid in child_pids(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(pid)
    return workers


def _wait_for_workers(server: ServerProcess, workers: int, timeout: float = 120.0) -> list[int]:
    """Block until every worker has logged its loaded model; their pids."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        loaded = len(READY_LINE.findall(server.log_tail(chars=1_000_000)))
        pids = worker_pids(server.pid)
        if loaded >= workers and len(pids) == workers:
            return pids
        time.sleep(0.2)
    raise RuntimeError(f"{workers} workers not ready after {timeout:.0f} s: {server.log_tail()}")


def _loadgen(url: str, body_file: Path, rate: float, seconds: float, headers: dict[str, str]) -> list[str]:
    return command(
        url, body_file, mode=OPEN, seconds=seconds, rate=rate, headers=list(headers.items()), timeout=10.0
    )


def _admin_reload(base_url: str, into: dict[str, int]) -> None:
    headers = {"Authorization": f"Bearer {SOAK_ADMIN_KEY}"}
    try:
        into["status"], _ = post(base_url + "/v1/admin/reload", b"{}", headers, timeout=60)
    except OSError:
        into["status"] = 0


def _run_with_reloads(
    server: ServerProcess, argv: list[str], seconds: float, every: float, workers: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the load generator while reloading every worker every `every` seconds; (load, reloads)."""
    generator = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.perf_counter()
    triggers, signalled = 0, 0
    admin: dict[str, int] = {}
    admin_thread: threading.Thread | None = None
    worker_sets: list[list[int]] = []
    admin_at = seconds / 2
    next_trigger = every
    while generator.poll() is None:
        elapsed = time.perf_counter() - started
        # Stop a second before the end so the last reload happens under load, not after it.
        if elapsed >= next_trigger and next_trigger <= seconds - 1:
            pids = worker_pids(server.pid)
            worker_sets.append(pids)
            for pid in pids:
                os.kill(pid, signal.SIGHUP)
                signalled += 1
            triggers += 1
            next_trigger += every
        if admin_thread is None and elapsed >= admin_at:
            # In a thread: the call returns only once that worker has reloaded, and the SIGHUP
            # schedule must not wait for it.
            admin_thread = threading.Thread(target=_admin_reload, args=(server.base_url, admin), daemon=True)
            admin_thread.start()
        time.sleep(0.05)
    stdout, stderr = generator.communicate()
    if admin_thread is not None:
        admin_thread.join(timeout=60)
    load = parse_output(stdout, stderr, generator.returncode)
    # Reloads still running when the load ends must finish before the log is read.
    deadline = time.perf_counter() + 30
    while True:
        log = server.log_tail(chars=50_000_000)
        finished = sum(len(pattern.findall(log)) for pattern in (SIGHUP_RELOAD, ADMIN_RELOAD, FAILED_RELOAD))
        if finished >= signalled + (1 if admin_thread else 0) or time.perf_counter() > deadline:
            break
        time.sleep(0.5)
    reloads = {
        "triggers": triggers,
        "sighup_sent": signalled,
        "sighup_reloads_logged": len(SIGHUP_RELOAD.findall(log)),
        "admin_status": admin.get("status"),
        "admin_reloads_logged": len(ADMIN_RELOAD.findall(log)),
        "failed_reloads_logged": len(FAILED_RELOAD.findall(log)),
        "worker_pids_changed": len({tuple(p) for p in worker_sets}) > 1,
        "workers_seen": len({pid for pids in worker_sets for pid in pids}),
        "expected_workers": workers,
    }
    return load, reloads


def _memory(server: ServerProcess) -> dict[str, float]:
    """RSS in MB of the supervisor and of each worker (by pid)."""
    workers = {str(pid): rss_mb(pid) for pid in worker_pids(server.pid)}
    return {"supervisor": rss_mb(server.pid), **workers}


def _rss_change(before: dict[str, float], after: dict[str, float]) -> str:
    changes = [
        f"{before[pid]:.0f} → {after[pid]:.0f} MB" for pid in before if pid != "supervisor" and pid in after
    ]
    return ", ".join(changes) or "—"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _failures(summary: dict[str, Any]) -> str:
    statuses = {k: v for k, v in summary["statuses"].items() if not k.startswith("2")}
    kinds = summary.get("error_kinds", {})
    return f"non-2xx {statuses or 'none'}, connection errors/timeouts {kinds or 'none'}"


def _failed_verdict(summary: dict[str, Any]) -> str:
    return "met" if summary["errors"] == 0 else f"missed by {summary['errors']} failed requests"


def soak_section(
    bundle: Path, seconds: float = 60.0, rate: float = 200.0, every: float = 5.0, workers: int = 2
) -> Section:
    """Start `raqib serve`, run the steady and the reload phases, and report both."""
    stamp = measured_on()
    bodies = score_bodies()
    headers = {"Authorization": "Bearer bench-key"}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = Path(tmp)
        body_file = write_bodies(bodies, workdir / "bodies.jsonl")
        port = free_port()
        # INFO: readiness of each worker and every reload are read from the server's log lines.
        env = server_env(bundle, workdir / "state", RAQIB_ADMIN_KEY=SOAK_ADMIN_KEY, RAQIB_LOG_LEVEL="INFO")
        serve = [
            sys.executable,
            "-m",
            "training.cli.main",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        with ServerProcess(serve, port, env, workdir / "server.log") as server:
            server.wait_ready()
            _wait_for_workers(server, workers)
            url = server.base_url + SCORE_PATH
            status, answer = post(url, bodies[0], headers)
            if status != 200:
                raise RuntimeError(f"POST {SCORE_PATH} answered {status}: {answer[:300]!r}")
            argv = _loadgen(url, body_file, rate, seconds, headers)
            print(f"soak: steady, {rate:g} requests/s for {seconds:g} s", flush=True)
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 120)
            steady = parse_output(done.stdout, done.stderr, done.returncode)
            rss_before = _memory(server)
            print(f"soak: same load, every worker reloaded every {every:g} s", flush=True)
            reloading, reloads = _run_with_reloads(server, argv, seconds, every, workers)
            rss_after = _memory(server)
    complete = (
        reloads["sighup_reloads_logged"] >= reloads["sighup_sent"]
        and reloads["admin_reloads_logged"] >= 1
        and reloads["failed_reloads_logged"] == 0
    )
    reload_verdict = _failed_verdict(reloading)
    if not complete:
        reload_verdict += "; NOT every reload completed (see the table)"
    goals = [
        Goal(
            f"soak {seconds:g} s at {rate:g} requests/s, {workers} workers: failed requests",
            f"{steady['errors']} of {steady['sent']}",
            "0",
            _failed_verdict(steady),
        ),
        Goal(
            f"soak with a reload of every worker every {every:g} s: failed requests",
            f"{reloading['errors']} of {reloading['sent']}",
            "0",
            reload_verdict,
        ),
    ]
    lines = [
        stamp,
        "",
        f"Protocol: `raqib serve --workers {workers}` on loopback with the champion (`{bundle}`), API key "
        "and admin key set through the environment, the per-key rate limit off (`RAQIB_RATE_LIMIT__ENABLED="
        "false`: a single key at this rate would otherwise be throttled by design), log level INFO (the "
        "server log is checked), SQLite audit log in a fresh state dir. Load: training.bench.loadgen, open "
        f"loop at a fixed {rate:g} requests/s for {seconds:g} s per phase on /v1/score ({len(bodies)} "
        "starter comments with their article's title and text, in turn), latency from the scheduled "
        f"send time. Phase 2 repeats the load while every {every:g} s each worker process gets SIGHUP "
        "(both workers reload the bundle: sha256 check, unpickle, warm-up, atomic swap), and "
        "`POST /v1/admin/reload` is called once mid-phase. A failed request is a non-2xx answer, a "
        "connection error or a 10 s timeout.",
        "",
        "| phase | sent | 2xx | failed | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {s['sent']} | {s['ok']} | **{s['errors']}** | {_ms(s['p50_ms'])} | "
            f"{_ms(s['p99_ms'])} | {_ms(s['max_ms'])} |"
            for name, s in (("steady", steady), ("reloading every worker", reloading))
        ],
        "",
        "| reloads during phase 2 | value |",
        "|---|---|",
        f"| SIGHUP triggers × workers = signals sent | {reloads['triggers']} × {workers} = "
        f"{reloads['sighup_sent']} |",
        f"| SIGHUP reloads completed (server log) | {reloads['sighup_reloads_logged']} |",
        f"| admin route: status, reloads completed | {reloads['admin_status']}, "
        f"{reloads['admin_reloads_logged']} |",
        f"| failed reloads (server log) | {reloads['failed_reloads_logged']} |",
        f"| worker processes seen (a restart would show more than {workers}) | {reloads['workers_seen']} |",
        f"| RSS per worker after phase 1 → after phase 2 | {_rss_change(rss_before, rss_after)} |",
        f"| RSS of the supervisor process (`raqib serve`) | {rss_after['supervisor']:.0f} MB |",
    ]
    lines += generator_lag_warning(steady) or generator_lag_warning(reloading)
    if steady["errors"] or reloading["errors"]:
        lines += [
            "",
            "Failures by kind: steady " + _failures(steady) + "; reloading " + _failures(reloading) + ".",
        ]
    figures = {
        "steady": steady,
        "reloading": reloading,
        "reloads": reloads,
        "rss_mb_after_steady": rss_before,
        "rss_mb_after_reloads": rss_after,
    }
    return Section(
        "soak", f"Soak: {workers} workers, {rate:g} requests/s, model reloads", lines, goals, figures
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak, rewrite the soak section of experiments/RESULTS.md, print it."""
    parser = argparse.ArgumentParser(prog="python -m training.bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of each phase.")
    parser.add_argument("--rate", type=float, default=200.0, help="Requests per second.")
    parser.add_argument("--reload-every", type=float, default=5.0, help="Seconds between reloads.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-mlflow", action="store_true", help="Do not log a run to MLflow.")
    args = parser.parse_args(argv)
    if not (args.bundle / "model.joblib").is_file():
        parser.error(f"no bundle at {args.bundle}: run `make demo` first")
    metadata = json.loads((args.bundle / "metadata.json").read_text(encoding="utf-8"))
    section = soak_section(args.bundle, args.seconds, args.rate, args.reload_every, args.workers)
    section.model = model_label(args.bundle, metadata)
    write_results([section], header_lines(args.bundle, metadata))
    print(section.render())
    if not args.no_mlflow:
        params = {"bundle": str(args.bundle), "model_version": metadata.get("version"), **vars(args)}
        run_id = log_to_mlflow([section], params, run_name="soak")
        print(f"logged to MLflow experiment raqib-bench, run {run_id}")
    return 0 if all(goal.verdict == "met" for goal in section.goals) else 1


if __name__ == "__main__":
    sys.exit(main())
