"""The load generator counts what it sent, what succeeded and what failed (never asserts timings)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from training.bench.loadgen import Target, closed_loop, open_loop, percentile

pytestmark = pytest.mark.unit

BODY = b'{"comment": {"text": "x"}}'


async def _tiny_server() -> tuple[asyncio.Server, int, list[bytes]]:
    """Loopback HTTP/1.1 keep-alive server: 200 on /ok, 503 on anything else; records request bodies."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    int(v) for k, _, v in (h.partition(":") for h in lines) if k == "Content-Length"
                )
                seen.append(await reader.readexactly(length))
                status = "200 OK" if lines[0].split()[1] == "/ok" else "503 Service Unavailable"
                payload = b'{"status": "fine"}'
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_open_loop_sends_the_scheduled_number_of_requests_and_counts_failures() -> None:
    async def scenario() -> tuple[dict, dict, dict, list[bytes]]:
        server, port, seen = await _tiny_server()
        async with server:
            ok = await open_loop(Target.from_url(f"http://127.0.0.1:{port}/ok", [BODY]), rate=50, seconds=0.4)
            refused = await open_loop(
                Target.from_url(f"http://127.0.0.1:{port}/down", [BODY]), rate=50, seconds=0.2
            )
        dead = await open_loop(
            Target.from_url(f"http://127.0.0.1:{_closed_port()}/ok", [BODY]), rate=50, seconds=0.2
        )
        return ok.summary(), refused.summary(), dead.summary(), seen

    ok, refused, dead, seen = asyncio.run(scenario())
    assert (ok["sent"], ok["ok"], ok["errors"]) == (20, 20, 0)
    assert ok["p50_ms"] is not None and ok["connections_opened"] >= 1
    assert seen[0] == BODY and len(seen) == 30
    assert (refused["sent"], refused["ok"], refused["non_2xx"], refused["errors"]) == (10, 0, 10, 10)
    assert refused["statuses"] == {"503": 10}
    assert (dead["sent"], dead["ok"], dead["connection_errors"], dead["errors"]) == (10, 0, 10, 10)


def test_closed_loop_reuses_its_connections_and_counts_only_the_window() -> None:
    async def scenario() -> dict:
        server, port, _ = await _tiny_server()
        async with server:
            target = Target.from_url(f"http://127.0.0.1:{port}/ok", [BODY, BODY])
            result = await closed_loop(target, connections=3, seconds=0.3, warmup=0.1)
        return result.summary()

    summary = asyncio.run(scenario())
    assert summary["ok"] > 0 and summary["ok"] == summary["sent"] and summary["errors"] == 0
    assert summary["connections_opened"] == 3


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([], 50) is None
