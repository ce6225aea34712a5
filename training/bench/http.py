"""HTTP section of `make bench`: `/v1/score` against a bare FastAPI endpoint, same server, same load.

Also the pieces `make soak` and the cold-start measure share: the request bodies, the bare app, and
`ServerProcess` (start a server on loopback, wait until it is ready, read its memory, stop it).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from training.bench.flame import PY_SPY_INSTALL, Profile, Recorder, py_spy_path, write_summary
from training.bench.loadgen import CLOSED, OPEN, run_in_subprocess
from training.bench.report import Goal, Section, measured_on, missed_by

RAQIB_APP = "serving.api.app:create_app"
BARE_APP = "training.bench.http:create_bare_app"
# Raqib with the model's answers memoised per comment: what the request path alone allows.
MEMO_APP = "training.bench.http:create_memoised_model_app"
SCORE_PATH = "/v1/score"
BENCH_API_KEY = "bench-key"
FIXED_ANSWER: dict[str, Any] = {
    "comment_id": "c-1",
    "label": "on_topic",
    "scores": {"abusive": 0.01, "off_topic": 0.02, "on_topic": 0.95, "spam": 0.02},
    "action": "approve",
}
CLOSED_CONNECTIONS = 16
CLOSED_SECONDS = 10.0
CLOSED_RUNS = 3
WARMUP_SECONDS = 2.0
OPEN_RATE = 100.0
OPEN_SECONDS = 20.0
# p99 at the fixed rate moves by a third between runs on a shared 2-core machine: the median of a few.
OPEN_RUNS = 3
# The goals: /v1/score at >= 35 % of the bare endpoint's throughput, p99 <= 10 ms at 100/s.
THROUGHPUT_GOAL = 0.35
P99_GOAL_MS = 10.0
# A third closed-loop run with py-spy attached (sampling slows the server: the figures above come
# from the runs without it).
PROFILE_SECONDS = 10.0
FLAME_SVG = Path("experiments/flame_v1_score.svg")
PROFILE_NOW = Path("experiments/http_profile.json")
PROFILE_BEFORE = Path("experiments/http_profile_before.json")
TOP_FUNCTIONS = 12
WRK_INSTALL = "apt-get install -y wrk"
WRK_LUA = r"""
local bodies = {
__BODIES__
}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
__HEADERS__
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def score_bodies(limit: int = 200) -> list[bytes]:
    """`/v1/score` bodies from the starter corpus: comment plus article title and text, as a CMS sends."""
    from training.data.gather import load_starter

    bodies = []
    for record in load_starter("data/starter")[:limit]:
        request: dict[str, Any] = {"comment": {"id": record.comment_id, "text": record.text}}
        if record.article_id:
            request["article"] = {
                "id": record.article_id,
                "title": record.article_title,
                "text": record.article_text,
            }
        bodies.append(json.dumps(request, ensure_ascii=False).encode("utf-8"))
    return bodies


def create_bare_app() -> Any:
    """The floor: a FastAPI app whose POST /v1/score parses the JSON body and returns fixed JSON."""
    from fastapi import Body, FastAPI

    app = FastAPI()

    @app.post(SCORE_PATH)
    async def score(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI idiom)
        """Fixed answer; the body is read and parsed like any FastAPI endpoint does."""
        return FIXED_ANSWER

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        """Always ready."""
        return {"status": "ready"}

    return app


def memoise_scores(model_class: Any) -> None:
    """Make `model_class.score` answer each comment it has scored before from a memo.

    For the bench only (`create_memoised_model_app`): after the warm-up every /v1/score request is
    answered without the model, so the throughput left is the request path's own (auth, validation,
    micro-batcher, audit commit, response, access log). Keyed by comment, article and `explain`;
    the site's thresholds are not in the key (the bench scores every body under one site)."""
    score = model_class.score

    def memoised(self: Any, items: Any, thresholds: Any = None, explain: bool = True) -> list[Any]:
        memo: dict[tuple[Any, ...], Any] = self.__dict__.setdefault("_bench_memo", {})
        answers = []
        for i, item in enumerate(items):
            key = (item.text, item.article_title, item.article_text, explain)
            if key not in memo:
                chosen = [thresholds[i]] if thresholds is not None else None
                memo[key] = score(self, [item], chosen, explain)[0]
            answers.append(memo[key])
        return answers

    model_class.score = memoised


def create_memoised_model_app() -> Any:
    """Raqib as deployed, but the model answers from a memo (`memoise_scores`): an upper bound of
    /v1/score's throughput if scoring cost nothing. Never a product setting: the bench serves it."""
    from serving.api.app import create_app
    from serving.model.moderation import ModerationModel

    memoise_scores(ModerationModel)
    return create_app()


def uvicorn_command(app: str, port: int, workers: int = 1) -> list[str]:
    """The one uvicorn command line both apps are served with (only the app differs)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS, VmHWM, ...) in MB; 0 when the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:")), 0)
    return kb / 1024


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 when it is gone)."""
    return status_mb(pid, "VmRSS")


def child_pids(pid: int) -> list[int]:
    """Direct children of a process, from /proc (Linux)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(children))


class ServerProcess:
    """A server on loopback in a child process: started, waited for, measured, stopped."""

    def __init__(
        self, command: Sequence[str], port: int, env: dict[str, str], log_path: Path, cwd: Path | None = None
    ):
        self.command = list(command)
        self.port = port
        self.env = env
        self.log_path = log_path
        # Another checkout to serve the app from (the code before a change), else this one.
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> ServerProcess:
        """Launch the command, output to the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        return self

    def wait_ready(self, path: str = "/readyz", timeout: float = 120.0) -> float:
        """Seconds from start until `path` answers 200 (RuntimeError with the log tail if it never does)."""
        assert self.process is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - self.started_at
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 800) -> str:
        """The end of the server's output."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def tree_rss_mb(self) -> float:
        """Resident memory of the server and its worker processes, in MB."""
        return rss_mb(self.pid) + sum(rss_mb(child) for child in child_pids(self.pid))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def server_env(bundle: Path, state_dir: Path, **extra: str) -> dict[str, str]:
    """The benchmark servers' environment: the bundle, a fresh state dir, one API key, no rate limit."""
    return {
        **os.environ,
        "RAQIB_MODEL_DIR": str(bundle.resolve()),
        "RAQIB_STATE_DIR": str(state_dir),
        "RAQIB_API_KEYS": BENCH_API_KEY,
        # The per-key rate limit (50/s by default) is policy, not capacity: it would answer 429 here.
        "RAQIB_RATE_LIMIT__ENABLED": "false",
        **extra,
    }


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, bytes]:
    """One POST (status and body), for checks before a load run."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- closed loop with wrk (preferred) -----------------------------------------------------------


def wrk_available() -> bool:
    """True when the `wrk` binary is on PATH."""
    return shutil.which("wrk") is not None


def _lua_string(body: bytes) -> str:
    text = body.decode("utf-8")
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def wrk_script(bodies: Sequence[bytes], headers: dict[str, str]) -> str:
    """A wrk Lua script: POST the bodies in turn with the headers; print a JSON summary when done."""
    header_lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    bodies_table = ",\n".join(_lua_string(body) for body in bodies)
    return WRK_LUA.replace("__BODIES__", bodies_table).replace("__HEADERS__", header_lines)


def wrk_closed_loop(
    url: str, bodies: Sequence[bytes], headers: dict[str, str], connections: int, seconds: float
) -> dict[str, Any]:
    """Max throughput with wrk (one thread, keep-alive connections), under loadgen's summary keys."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(wrk_script(bodies, headers), encoding="utf-8")
        done = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    duration = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"]
    ok = raw["requests"] - raw["status"]
    return {
        "mode": CLOSED,
        "generator": "wrk",
        "connections": connections,
        "seconds": duration,
        "sent": raw["requests"],
        "ok": ok,
        "errors": raw["status"] + socket_errors + raw["timeout"],
        "non_2xx": raw["status"],
        "connection_errors": socket_errors,
        "timeouts": raw["timeout"],
        "throughput_rps": ok / duration if duration else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


def closed_loop(
    url: str, bodies: Sequence[bytes], headers: dict[str, str], connections: int, seconds: float
) -> dict[str, Any]:
    """Max throughput with wrk when installed, else with the Python generator in its own process."""
    if wrk_available():
        return wrk_closed_loop(url, bodies, headers, connections, seconds)
    summary = run_in_subprocess(
        url, bodies, mode=CLOSED, seconds=seconds, connections=connections, headers=list(headers.items())
    )
    summary["generator"] = "python (training.bench.loadgen)"
    return summary


# --- the section --------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    app: str,
    bundle: Path,
    bodies: list[bytes],
    headers: dict[str, str],
    with_open_loop: bool,
    workdir: Path,
    profile: bool = False,
    code: Path | None = None,
) -> dict[str, Any]:
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="state-", dir=workdir))
    name = app.split(":")[-1]
    server = ServerProcess(
        uvicorn_command(app, port), port, server_env(bundle, state), workdir / f"{name}.log", cwd=code
    )
    with server:
        ready_seconds = server.wait_ready()
        url = server.base_url + SCORE_PATH
        status, answer = post(url, bodies[0], headers)
        if status != 200:
            raise RuntimeError(f"{app}: POST {SCORE_PATH} answered {status}: {answer[:300]!r}")
        closed_loop(url, bodies, headers, CLOSED_CONNECTIONS, WARMUP_SECONDS)
        result: dict[str, Any] = {"ready_seconds": ready_seconds}
        if with_open_loop:
            print(
                f"http: {name} open loop {OPEN_RATE:g} requests/s, {OPEN_RUNS} x {OPEN_SECONDS:g} s",
                flush=True,
            )
            counted = batch_counts(server.base_url)
            open_runs = [
                run_in_subprocess(
                    url,
                    bodies,
                    mode=OPEN,
                    rate=OPEN_RATE,
                    seconds=OPEN_SECONDS,
                    headers=list(headers.items()),
                )
                for _ in range(OPEN_RUNS)
            ]
            result["open_comments_per_call"] = comments_per_call(counted, batch_counts(server.base_url))
            result["open_runs"] = open_runs
            result["open"] = median_by_p99(open_runs)
        print(
            f"http: {name} closed loop, {CLOSED_CONNECTIONS} connections, "
            f"{CLOSED_RUNS} x {CLOSED_SECONDS:g} s",
            flush=True,
        )
        runs = []
        counted = batch_counts(server.base_url)
        for _ in range(CLOSED_RUNS):
            used = cpu_seconds(server.pid)
            run = closed_loop(url, bodies, headers, CLOSED_CONNECTIONS, CLOSED_SECONDS)
            run["cpu_ms_per_request"] = (
                1000 * (cpu_seconds(server.pid) - used) / run["ok"] if run["ok"] else None
            )
            runs.append(run)
        result["closed_comments_per_call"] = comments_per_call(counted, batch_counts(server.base_url))
        # The median run by throughput: on a shared 2-core machine one run can be ±15 % off.
        runs.sort(key=lambda r: r["throughput_rps"])
        result["closed"] = runs[len(runs) // 2]
        result["closed_runs_rps"] = [r["throughput_rps"] for r in runs]
        result["cpu_ms_per_request"] = result["closed"]["cpu_ms_per_request"]
        if profile:
            result["profile"] = profile_under_load(server.pid, url, bodies, headers, workdir)
        result["rss_mb_after"] = server.tree_rss_mb()
    return result


def median_by_p99(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The open-loop run with the median p99 (one without any answer counts as the slowest), its
    errors replaced by every run's: the goal is no error in any run."""
    ordered = sorted(runs, key=lambda run: math.inf if run["p99_ms"] is None else run["p99_ms"])
    return {**ordered[len(ordered) // 2], "errors": sum(run["errors"] for run in runs)}


def open_runs_line(runs: Sequence[dict[str, Any]]) -> str:
    """Each open-loop run's p99 and the generator's own send lag p99, in the order they ran."""
    each = "; ".join(f"{_ms(run['p99_ms'])} (lag {_ms(run['send_lag_p99_ms'])})" for run in runs)
    return f"| p99 of each run (the generator's send lag p99) | {each} |"


def batch_counts(base_url: str) -> tuple[float, float] | None:
    """(model calls, comments) of /v1/score so far, from the server's batch-size histogram; None for a
    server without one (the bare app, or Raqib before micro-batching)."""
    import re

    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=10) as answer:
            text = answer.read().decode("utf-8")
    except (OSError, urllib.error.URLError):
        return None
    count = re.search(r"^raqib_score_batch_size_count ([0-9.e+]+)$", text, re.M)
    total = re.search(r"^raqib_score_batch_size_sum ([0-9.e+]+)$", text, re.M)
    return (float(count.group(1)), float(total.group(1))) if count and total else None


def comments_per_call(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    """Mean comments per model call between two `batch_counts` readings."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


def profile_under_load(
    pid: int, url: str, bodies: list[bytes], headers: dict[str, str], workdir: Path
) -> Profile | str:
    """py-spy on the server under the closed loop for PROFILE_SECONDS: its samples, or why there are none."""
    if py_spy_path() is None:
        return f"py-spy not found (install it with `{PY_SPY_INSTALL}`, or `make install`)"
    print(f"http: py-spy on pid {pid} under closed-loop load for {PROFILE_SECONDS:g} s", flush=True)
    try:
        recorder = Recorder(pid, PROFILE_SECONDS, workdir / "py-spy.txt")
        # Let py-spy attach first, so every sample is taken under load.
        time.sleep(1.0)
        closed_loop(url, bodies, headers, CLOSED_CONNECTIONS, PROFILE_SECONDS)
        raw = recorder.finish()
    except (OSError, RuntimeError) as exc:
        # Attaching needs ptrace rights (root, or CAP_SYS_PTRACE / kernel.yama.ptrace_scope=0).
        return f"py-spy could not sample the server: {exc}"
    return Profile.read(raw, {"py_spy": recorder.describe(), "load_seconds": PROFILE_SECONDS})


def _runs(measured: dict[str, Any]) -> str:
    return " / ".join(f"{rps:,.0f}" for rps in measured.get("closed_runs_rps", []))


def _per_call(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} ms"


def http_section(bundle: Path) -> Section:
    """Max throughput of /v1/score vs a bare endpoint (ratio), its latency at a fixed rate, its profile."""
    title = "HTTP: /v1/score against a bare FastAPI endpoint"
    stamp = measured_on()
    bodies = score_bodies()
    headers = {"Authorization": f"Bearer {BENCH_API_KEY}"}
    generator = "wrk (1 thread)" if wrk_available() else "the Python generator (training.bench.loadgen)"
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        raqib = _measure(RAQIB_APP, bundle, bodies, headers, True, workdir, profile=True)
        bare = _measure(BARE_APP, bundle, bodies, headers, False, workdir)
        memoised = _measure(MEMO_APP, bundle, bodies, headers, False, workdir)
    memo_rps = memoised["closed"]["throughput_rps"]
    raqib_rps = raqib["closed"]["throughput_rps"]
    bare_rps = bare["closed"]["throughput_rps"]
    ratio = raqib_rps / bare_rps if bare_rps else 0.0
    memo_ratio = memo_rps / bare_rps if bare_rps else 0.0
    fixed = raqib["open"]
    errors = fixed["errors"] + raqib["closed"]["errors"]
    goals = [
        Goal(
            "/v1/score max throughput vs bare FastAPI endpoint (audit on, API key on)",
            f"{ratio:.0%} ({raqib_rps:,.0f} vs {bare_rps:,.0f} requests/s)",
            f"≥ {THROUGHPUT_GOAL * 100:.0f} %",
            missed_by(100 * ratio, 100 * THROUGHPUT_GOAL, " points", higher_is_better=True),
        ),
        Goal(
            f"/v1/score p99 at {OPEN_RATE:g} requests/s (open loop)",
            f"{_ms(fixed['p99_ms'])} (p50 {_ms(fixed['p50_ms'])}), {fixed['errors']} errors",
            f"p99 ≤ {P99_GOAL_MS:g} ms, 0 errors",
            _p99_verdict(fixed),
        ),
    ]
    no_wrk = (
        "" if wrk_available() else f" (wrk not found: install it with `{WRK_INSTALL}` for a lighter client)"
    )
    lines = [
        stamp,
        "",
        "Protocol. Both apps are served by the same command, one after the other, alone on the machine: "
        f"`uvicorn APP --factory --host 127.0.0.1 --workers 1 --log-level warning --no-access-log` (APP = "
        f"`{RAQIB_APP}` or `{BARE_APP}`); uvicorn picks httptools and uvloop when installed, as they are "
        "with Raqib's dependencies, for both apps alike. The bare app parses the same JSON body and "
        "returns a fixed JSON answer. Raqib runs with its defaults as deployed except the per-key rate "
        "limit, switched off (`RAQIB_RATE_LIMIT__ENABLED=false`: one key at full speed would get 429s): "
        "API key checked, the SQLite audit log (in a "
        "fresh temporary state dir) committed before each answer, its own INFO access line per request, "
        f"explanations and spans in every answer. Bodies: {len(bodies)} starter comments with their "
        "article's title and text, sent in turn, with `Authorization: Bearer`. Loopback only.",
        "",
        f"- Max throughput: closed loop, {CLOSED_CONNECTIONS} keep-alive connections, {CLOSED_RUNS} runs of "
        f"{CLOSED_SECONDS:g} s after a {WARMUP_SECONDS:g} s warm-up, generated by {generator}{no_wrk}; "
        "only 2xx answers count; the figures are the median run's (all runs: "
        f"{_runs(raqib)} requests/s for Raqib, {_runs(bare)} for the bare app, {_runs(memoised)} for Raqib "
        "with memoised answers). "
        "Server CPU per request: the server process's user + system CPU time over that run (all its "
        "threads), divided by the answers; it counts work the throughput hides when the load generator "
        "and another process share the cores.",
        f"- Latency: open loop at a fixed {OPEN_RATE:g} requests/s, {OPEN_RUNS} runs of {OPEN_SECONDS:g} s "
        "(training.bench.loadgen: send times fixed in advance, latency measured from the scheduled send "
        "time, so a stall is not hidden by the client waiting), before the closed-loop runs; the figures "
        "are the run with the median p99, its errors those of every run.",
        f"- The request path alone: the same closed loop against Raqib served as `{MEMO_APP}`, the same "
        "app with the model's answers memoised per comment (after the warm-up no request reaches the "
        "model; everything else is as deployed). It bounds what faster scoring alone can give: with "
        "scoring free, /v1/score would reach that share of the bare endpoint.",
        "",
        "| | /v1/score (Raqib) | bare FastAPI | ratio |",
        "|---|---|---|---|",
        f"| max throughput | {raqib_rps:,.0f} requests/s | {bare_rps:,.0f} requests/s | **{ratio:.0%}** |",
        f"| latency under max load, p50 / p99 | {_ms(raqib['closed']['p50_ms'])} / "
        f"{_ms(raqib['closed']['p99_ms'])} | {_ms(bare['closed']['p50_ms'])} / "
        f"{_ms(bare['closed']['p99_ms'])} | — |",
        f"| server CPU per answered request | {_ms(raqib['cpu_ms_per_request'])} | "
        f"{_ms(bare['cpu_ms_per_request'])} | — |",
        f"| the request path alone (model answers memoised): max throughput | "
        f"{memo_rps:,.0f} requests/s | {bare_rps:,.0f} requests/s | "
        f"{memo_ratio:.0%} |",
        f"| the request path alone: server CPU per answered request | "
        f"{_ms(memoised['cpu_ms_per_request'])} | {_ms(bare['cpu_ms_per_request'])} | — |",
        f"| errors under max load | {raqib['closed']['errors']} | {bare['closed']['errors']} | — |",
        f"| server RSS after the runs | {raqib['rss_mb_after']:.0f} MB | {bare['rss_mb_after']:.0f} MB | — |",
        f"| comments per model call (micro-batching, `score_batch_max`) | "
        f"{_per_call(raqib.get('closed_comments_per_call'))} | — | — |",
        "",
        f"| /v1/score at {OPEN_RATE:g} requests/s, open loop | value |",
        "|---|---|",
        f"| requests sent / 2xx / errors | {fixed['sent']} / {fixed['ok']} / {fixed['errors']} |",
        f"| p50 / p90 / p99 / max | {_ms(fixed['p50_ms'])} / {_ms(fixed['p90_ms'])} / "
        f"{_ms(fixed['p99_ms'])} / {_ms(fixed['max_ms'])} |",
        open_runs_line(raqib["open_runs"]),
        f"| comments per model call | {_per_call(raqib.get('open_comments_per_call'))} |",
        f"| generator's own send lag, p99 (must stay small for the schedule to hold) | "
        f"{_ms(fixed['send_lag_p99_ms'])} |",
    ]
    lines += generator_lag_warning(fixed)
    if errors:
        lines += ["", f"Errors seen: open loop {fixed['statuses']}, closed loop {raqib['closed']}."]
    profile = raqib.pop("profile")
    before = read_profile_summary(PROFILE_BEFORE)
    lines += ["", *profile_lines(profile, before)]
    figures = {
        "raqib": raqib,
        "bare": bare,
        "memoised": memoised,
        "throughput_ratio": ratio,
        "memoised_ratio": memo_ratio,
        "generator": generator,
        "open_p99_ms": fixed["p99_ms"],
        "open_errors": fixed["errors"],
    }
    if isinstance(profile, Profile):
        figures["profile_parts"] = {row["part"]: row["share"] for row in profile.summary()["parts"]}
    return Section("http", title, lines, goals, figures)


def read_profile_summary(path: Path) -> dict[str, Any] | None:
    """A committed profile summary (the 'before'), or None when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _before_figures(before: dict[str, Any]) -> list[str]:
    """The before's own measures (same protocol, same bundle, its own run), when it has them."""
    rps = before.get("throughput_rps")
    if rps is None:
        return []
    p99 = before.get(f"open_p99_ms_at_{OPEN_RATE:g}")
    return [
        f"Measured with it, by the same protocol: max throughput {rps:,.0f} requests/s, server CPU "
        f"{_ms(before.get('cpu_ms_per_request'))} per request, p99 {_ms(p99)} at {OPEN_RATE:g} requests/s.",
        "",
    ]


def profile_lines(profile: Profile | str, before: dict[str, Any] | None) -> list[str]:
    """The 'where the time goes' block: parts before and now, the top functions, the flame graph."""
    lines = ["### Where /v1/score's time goes (py-spy under load)", ""]
    if isinstance(profile, str):
        return [*lines, f"Not profiled: {profile}."]
    summary = profile.summary(TOP_FUNCTIONS)
    summary["measured_on"] = measured_on()
    write_summary(summary, PROFILE_NOW)
    profile.write_svg(FLAME_SVG, f"/v1/score under closed-loop load ({CLOSED_CONNECTIONS} connections)")
    lines += [
        "Protocol: after the runs above, the same server under the same closed loop for "
        f"{PROFILE_SECONDS:g} s with `{summary['py_spy']}` attached (sampling slows it, so no figure "
        "above comes from this run). "
        "`--gil` keeps the samples of whichever thread holds the GIL: the Python work this one worker "
        "process serialises, where throughput is lost. Waits with the GIL released (the disk's fsync, "
        "SQLite's own C code, socket writes) are not in the samples; the CPU per request above counts "
        "them. Each sample is given to one part, the first in the table's order whose functions are on "
        "its stack (training/bench/flame.py, PARTS), so a column adds up to 100 %.",
        "",
        f"Flame graph of these samples, coloured by part: [{FLAME_SVG.name}]({FLAME_SVG.name}) "
        f"({summary['samples']:,} samples; the summary is in {PROFILE_NOW.name}).",
        "",
    ]
    # From the counts, as the flame graph's legend does (the summary's shares are rounded).
    now_parts = {part.name: count / max(profile.samples, 1) for part, count in profile.parts()}
    before_parts = {row["part"]: row["share"] for row in (before or {}).get("parts", [])}
    if before is not None:
        lines += [
            f"Before: {before.get('about', 'the request path before issue 18')} "
            f"({before.get('samples', 0):,} samples, {before.get('measured_on', 'date unknown')}; "
            f"{PROFILE_BEFORE.name}).",
            "",
            *_before_figures(before),
            "| part of the work | share of samples, before | now |",
            "|---|---|---|",
        ]
        order = sorted(set(now_parts) | set(before_parts), key=lambda p: -now_parts.get(p, 0.0))
        lines += [f"| {p} | {_share(before_parts.get(p))} | {_share(now_parts.get(p))} |" for p in order]
    else:
        lines += ["| part of the work | share of samples |", "|---|---|"]
        lines += [f"| {p} | {_share(s)} |" for p, s in now_parts.items()]
    lines += [
        "",
        f"Top {TOP_FUNCTIONS} functions by samples on top of the stack (their own code), now:",
        "",
        "| function | share of samples |",
        "|---|---|",
        *[f"| `{row['function']}` | {_share(row['share'])} |" for row in summary["top_self"]],
    ]
    return lines


def generator_lag_warning(summary: dict[str, Any], limit_ms: float = 2.0) -> list[str]:
    """A warning when the open-loop generator itself sent late: the machine, not just the server, was busy."""
    lag = summary.get("send_lag_p99_ms")
    if lag is None or lag <= limit_ms:
        return []
    return [
        "",
        f"**Caution:** the load generator itself sent 1 % of its requests more than {lag:.1f} ms late "
        f"(limit {limit_ms:g} ms): the machine was too busy for these latencies to describe the server "
        "alone.",
    ]


def _p99_verdict(summary: dict[str, Any]) -> str:
    problems = []
    if summary["p99_ms"] is None:
        problems.append("no successful request")
    elif (latency := missed_by(summary["p99_ms"], P99_GOAL_MS, " ms")) != "met":
        problems.append(latency)
    if summary["errors"]:
        problems.append(f"{summary['errors']} errors (goal 0)")
    return "; ".join(problems) if problems else "met"


def record_profile(bundle: Path, out: Path, about: str, code: Path | None = None) -> dict[str, Any]:
    """The section's /v1/score measures and profile for one checkout (`code`: another one), as a summary.

    What `--profile-only` writes: the committed 'before' is this, made on the code before a change.
    """
    bodies = score_bodies()
    headers = {"Authorization": f"Bearer {BENCH_API_KEY}"}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        measured = _measure(RAQIB_APP, bundle, bodies, headers, True, Path(tmp), profile=True, code=code)
    profile = measured.pop("profile")
    if isinstance(profile, str):
        raise RuntimeError(profile)
    summary = {
        "about": about,
        "measured_on": measured_on(),
        "bundle": str(bundle),
        "throughput_rps": measured["closed"]["throughput_rps"],
        "cpu_ms_per_request": measured["cpu_ms_per_request"],
        f"open_p99_ms_at_{OPEN_RATE:g}": measured["open"]["p99_ms"],
        **profile.summary(TOP_FUNCTIONS),
    }
    write_summary(summary, out)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m training.bench.http --profile-only`: measure and profile /v1/score alone, to a JSON file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.bench.http", description=main.__doc__)
    parser.add_argument("--profile-only", action="store_true", required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--code", type=Path, help="Serve the app from this checkout (default: this one).")
    parser.add_argument("--about", required=True, help="What code this is, for the report.")
    parser.add_argument("-o", "--out", type=Path, default=PROFILE_BEFORE)
    args = parser.parse_args(argv)
    summary = record_profile(args.bundle.resolve(), args.out, args.about, args.code)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("top_self", "top_inclusive")}, indent=1))


if __name__ == "__main__":
    main()
