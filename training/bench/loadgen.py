"""HTTP load generator for the benchmarks: open-loop fixed rate and closed-loop maximum throughput.

A minimal HTTP/1.1 client on asyncio streams with keep-alive connections: no third-party client,
so the generator's own cost stays small and predictable.

- Open loop (`open_loop`): request i is scheduled at start + i / rate whatever the server does, and
  its latency is measured from that scheduled time, so a stalled server cannot slow the generator
  down and hide its own stall (no coordinated omission). Requests wait for a free connection when
  all are busy, and that wait counts in their latency.
- Closed loop (`closed_loop`): N connections each send the next request as soon as the previous
  answer arrived; completions per second is the server's maximum throughput at that concurrency.

Run it in its own process (`python -m training.bench.loadgen ...`, or `run_in_subprocess`) so it does not
share an interpreter with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

OPEN, CLOSED = "open", "closed"


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 we can read."""


@dataclass(frozen=True)
class Target:
    """Where to send: host, port, path, the POST bodies to rotate through and extra headers."""

    host: str
    port: int
    path: str
    bodies: tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_url(cls, url: str, bodies: Sequence[bytes], headers: Sequence[tuple[str, str]] = ()) -> Target:
        """A target from an http:// URL (plain HTTP only: the benchmarks run on loopback)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url}: only http://host:port/path URLs are supported")
        if not bodies:
            raise ValueError("at least one request body is needed")
        return cls(parts.hostname, parts.port or 80, parts.path or "/", tuple(bodies), tuple(headers))

    def raw_requests(self) -> list[bytes]:
        """Each body as a complete, pre-encoded POST request (built once, not per send)."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        requests = []
        for body in self.bodies:
            head = (
                f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            )
            requests.append(head.encode("latin-1") + body)
        return requests


class _Connection:
    """One keep-alive connection; `send` returns the status code and leaves the stream ready."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.reusable = True
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        """Connect to host:port."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> int:
        """Write one request, read the whole answer; the status code."""
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(status_line[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip().lower()
        if status in (204, 304) or status < 200:
            pass  # no body by definition
        elif "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            await self._read_chunks()
        else:
            # Without a length the body ends when the server closes the connection.
            await self.reader.read()
            self.reusable = False
        if headers.get("connection") == "close":
            self.reusable = False
        return status

    async def _read_chunks(self) -> None:
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            await self.reader.readexactly(size + 2)
            if size == 0:
                return

    def close(self) -> None:
        """Close the socket (no waiting)."""
        self.reusable = False
        self.writer.close()


@dataclass
class LoadResult:
    """Counts and latencies of one load run."""

    mode: str
    seconds: float
    sent: int = 0
    ok: int = 0
    non_2xx: int = 0
    connection_errors: int = 0
    timeouts: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # Connection errors and timeouts by exception class, to tell a refused port from a reset.
    error_kinds: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    # Open loop only: how late the generator itself was to send (it must keep up with the schedule).
    send_lag_ms: list[float] = field(default_factory=list)
    connections_opened: int = 0
    target_rate: float | None = None
    connections: int | None = None

    @property
    def errors(self) -> int:
        """Failed requests: non-2xx answers, connection errors and timeouts."""
        return self.non_2xx + self.connection_errors + self.timeouts

    def summary(self) -> dict[str, Any]:
        """Plain figures for reports and JSON (latencies in ms, throughput in successful requests/s)."""
        latencies = sorted(self.latencies_ms)
        lags = sorted(self.send_lag_ms)
        return {
            "mode": self.mode,
            "seconds": round(self.seconds, 3),
            "target_rate": self.target_rate,
            "connections": self.connections,
            "connections_opened": self.connections_opened,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "connection_errors": self.connection_errors,
            "timeouts": self.timeouts,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_kinds": dict(sorted(self.error_kinds.items())),
            "throughput_rps": self.ok / self.seconds if self.seconds > 0 else 0.0,
            "p50_ms": percentile(latencies, 50),
            "p90_ms": percentile(latencies, 90),
            "p99_ms": percentile(latencies, 99),
            "max_ms": latencies[-1] if latencies else None,
            "send_lag_p99_ms": percentile(lags, 99),
        }


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first item
    return float(ordered[min(len(ordered), int(rank)) - 1])


CONNECTION_ERROR, TIMEOUT = "connection_error", "timeout"
Outcome = int | tuple[str, str]  # a status code, or (CONNECTION_ERROR or TIMEOUT, exception class)
# uvicorn closes a keep-alive connection after 5 s idle; reusing one that old races the server's
# close (a reset that is the client's fault), so older idle connections are replaced instead.
IDLE_LIMIT_SECONDS = 4.0


class _Pool:
    """Keep-alive connections, reused most-recently-released first, at most `limit` open at once."""

    def __init__(self, target: Target, limit: int):
        self.target = target
        self.opened = 0
        # A None slot means "may open a new connection"; live connections are put back on top.
        self.slots: asyncio.LifoQueue[_Connection | None] = asyncio.LifoQueue()
        for _ in range(limit):
            self.slots.put_nowait(None)

    async def acquire(self) -> _Connection:
        slot = await self.slots.get()
        if slot is not None and time.monotonic() - slot.last_used < IDLE_LIMIT_SECONDS:
            return slot
        if slot is not None:
            slot.close()
        try:
            connection = await _Connection.open(self.target.host, self.target.port)
        except BaseException:
            self.slots.put_nowait(None)
            raise
        self.opened += 1
        return connection

    def release(self, connection: _Connection | None) -> None:
        if connection is not None and connection.reusable:
            connection.last_used = time.monotonic()
            self.slots.put_nowait(connection)
            return
        if connection is not None:
            connection.close()
        self.slots.put_nowait(None)

    def close_all(self) -> None:
        while not self.slots.empty():
            slot = self.slots.get_nowait()
            if slot is not None:
                slot.close()


async def _exchange(pool: _Pool, raw: bytes, timeout: float) -> Outcome:
    """One request through the pool: its status code, or what went wrong."""
    connection: _Connection | None = None
    outcome: Outcome
    try:
        async with asyncio.timeout(timeout):
            connection = await pool.acquire()
            outcome = await connection.send(raw)
    except TimeoutError:
        outcome = (TIMEOUT, "TimeoutError")
    except (
        OSError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ProtocolError,
        ValueError,
    ) as exc:
        outcome = (CONNECTION_ERROR, exc.__class__.__name__)
    if connection is not None and not isinstance(outcome, int):
        connection.reusable = False  # a half-read answer would poison the next request
    pool.release(connection)
    return outcome


def _record(result: LoadResult, outcome: Outcome, latency_ms: float) -> None:
    if isinstance(outcome, tuple):
        kind, name = outcome
        result.error_kinds[name] += 1
        if kind == TIMEOUT:
            result.timeouts += 1
        else:
            result.connection_errors += 1
    else:
        result.statuses[outcome] += 1
        if 200 <= outcome < 300:
            result.ok += 1
        else:
            result.non_2xx += 1
        result.latencies_ms.append(latency_ms)


async def open_loop(
    target: Target,
    rate: float,
    seconds: float,
    max_connections: int = 256,
    timeout: float = 10.0,
) -> LoadResult:
    """Send `rate` requests/s for `seconds` on a fixed schedule; latency counts from the scheduled time."""
    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and seconds must be positive")
    loop = asyncio.get_running_loop()
    raws = target.raw_requests()
    result = LoadResult(mode=OPEN, seconds=seconds, target_rate=rate, connections=max_connections)
    pool = _Pool(target, max_connections)
    total = round(rate * seconds)
    start = loop.time() + 0.05

    async def fire(index: int, scheduled: float) -> None:
        result.send_lag_ms.append((loop.time() - scheduled) * 1000)
        outcome = await _exchange(pool, raws[index % len(raws)], timeout)
        _record(result, outcome, (loop.time() - scheduled) * 1000)

    tasks = []
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        result.sent += 1
        tasks.append(asyncio.create_task(fire(index, scheduled)))
    await asyncio.gather(*tasks)
    pool.close_all()
    result.connections_opened = pool.opened
    return result


async def closed_loop(
    target: Target,
    connections: int,
    seconds: float,
    warmup: float = 1.0,
    timeout: float = 10.0,
) -> LoadResult:
    """`connections` clients send back to back for warmup + seconds; only the window after warmup counts."""
    if connections <= 0 or seconds <= 0:
        raise ValueError("connections and seconds must be positive")
    loop = asyncio.get_running_loop()
    raws = target.raw_requests()
    result = LoadResult(mode=CLOSED, seconds=seconds, connections=connections)
    window_start = loop.time() + warmup
    window_end = window_start + seconds
    pools = [_Pool(target, 1) for _ in range(connections)]

    async def client(number: int) -> None:
        index = number
        while loop.time() < window_end:
            begun = loop.time()
            outcome = await _exchange(pools[number], raws[index % len(raws)], timeout)
            finished = loop.time()
            # Only requests wholly inside the window count: warm-up and the tail are steady-state noise.
            if begun >= window_start and finished <= window_end:
                result.sent += 1
                _record(result, outcome, (finished - begun) * 1000)
            index += connections
        pools[number].close_all()

    await asyncio.gather(*(client(n) for n in range(connections)))
    result.connections_opened = sum(pool.opened for pool in pools)
    return result


def command(
    url: str,
    body_file: Path,
    *,
    mode: str,
    seconds: float,
    rate: float | None = None,
    connections: int = 16,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> list[str]:
    """The `python -m training.bench.loadgen` command line for one run (prints its summary as JSON)."""
    argv = [
        sys.executable,
        "-m",
        "training.bench.loadgen",
        url,
        "--bodies",
        str(body_file),
        "--mode",
        mode,
        "--seconds",
        str(seconds),
        "--connections",
        str(connections),
        "--timeout",
        str(timeout),
    ]
    if rate is not None:
        argv += ["--rate", str(rate)]
    for name, value in headers:
        argv += ["--header", f"{name}: {value}"]
    return argv


def write_bodies(bodies: Sequence[bytes], path: Path) -> Path:
    """Write request bodies one per line, as `--bodies` reads them."""
    if any(b"\n" in body for body in bodies):
        raise ValueError("request bodies must be single-line JSON")
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


def parse_output(stdout: str, stderr: str, returncode: int) -> dict[str, Any]:
    """The summary a finished `python -m training.bench.loadgen` printed (RuntimeError if it failed)."""
    if returncode != 0:
        raise RuntimeError(f"load generator failed ({returncode}): {stderr.strip()[-500:]}")
    summary: dict[str, Any] = json.loads(stdout)
    return summary


def run_in_subprocess(
    url: str,
    bodies: Sequence[bytes],
    *,
    mode: str,
    seconds: float,
    rate: float | None = None,
    connections: int = 16,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Run the generator in a fresh Python process (so it shares no interpreter with the caller)."""
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        body_file = write_bodies(bodies, Path(tmp) / "bodies.jsonl")
        argv = command(
            url,
            body_file,
            mode=mode,
            seconds=seconds,
            rate=rate,
            connections=connections,
            headers=headers,
            timeout=timeout,
        )
        done = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=seconds + timeout + 60
        )
    return parse_output(done.stdout, done.stderr, done.returncode)


def _read_bodies(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run one load and print its summary as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m training.bench.loadgen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("url", help="http://127.0.0.1:PORT/path")
    parser.add_argument("--bodies", type=Path, required=True, help="One JSON request body per line.")
    parser.add_argument("--mode", choices=(OPEN, CLOSED), default=OPEN)
    parser.add_argument("--rate", type=float, default=100.0, help="Open loop: requests per second.")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16, help="Closed loop: concurrent clients.")
    parser.add_argument("--max-connections", type=int, default=256, help="Open loop: connection cap.")
    parser.add_argument("--timeout", type=float, default=10.0, help="Seconds before a request is a timeout.")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable.")
    args = parser.parse_args(argv)
    headers = [(name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in args.header)]
    target = Target.from_url(args.url, _read_bodies(args.bodies), headers)
    started = time.perf_counter()
    if args.mode == OPEN:
        result = asyncio.run(open_loop(target, args.rate, args.seconds, args.max_connections, args.timeout))
    else:
        result = asyncio.run(closed_loop(target, args.connections, args.seconds, timeout=args.timeout))
    summary = result.summary()
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
