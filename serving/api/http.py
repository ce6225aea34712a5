"""uvicorn's HTTP protocol, with Nagle's algorithm switched off on every accepted connection.

With `--workers N` uvicorn binds the listening socket itself as `socket.socket(family=AF_INET)`:
its proto is 0, not IPPROTO_TCP, so asyncio does not set TCP_NODELAY on the connections it
accepts, and a small JSON answer sat ~40 ms waiting for the client's delayed ACK (p50 46 ms with
2 workers against ~4 ms with one, measured by `make soak`).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


def enable_nodelay(transport: asyncio.BaseTransport) -> None:
    """Set TCP_NODELAY on the transport's socket when it is a TCP socket."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # a socket that went away between accept and here: nothing to tune
        pass


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's default HTTP protocol (httptools or h11) with TCP_NODELAY set first."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Switch Nagle off, then let uvicorn take the connection."""
        enable_nodelay(transport)
        super().connection_made(transport)
