"""Multi-worker serving: every accepted TCP connection gets TCP_NODELAY."""

import socket

import pytest

from serving.api.http import NoDelayHTTPProtocol, enable_nodelay

pytestmark = pytest.mark.unit


class _Transport:
    def __init__(self, sock: socket.socket | None):
        self._sock = sock

    def get_extra_info(self, name: str) -> socket.socket | None:
        return self._sock if name == "socket" else None


def test_accepted_connection_of_a_family_only_listener_gets_nodelay() -> None:
    # Bound the way uvicorn binds it for --workers N: family only, proto 0.
    with socket.socket(family=socket.AF_INET) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                enable_nodelay(_Transport(accepted))
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_non_tcp_or_missing_sockets_are_left_alone() -> None:
    enable_nodelay(_Transport(None))
    left, right = socket.socketpair()
    with left, right:
        enable_nodelay(_Transport(left))  # AF_UNIX: no TCP options to set, no error


def test_raqib_serve_uses_the_nodelay_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from serving.api import app

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    app.run(workers=2)
    assert seen["http"] == "serving.api.http:NoDelayHTTPProtocol"
    assert issubclass(NoDelayHTTPProtocol, __import__("asyncio").Protocol)


def test_raqib_serve_parses_http_in_c_on_libuv() -> None:
    # httptools and uvloop are dependencies: uvicorn's automatic choices must land on them, or the
    # server silently falls back to the pure-Python parser and asyncio's loop (a third slower).
    from uvicorn.loops.auto import auto_loop_factory
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(NoDelayHTTPProtocol, HttpToolsProtocol)
    loop = auto_loop_factory()()
    try:
        assert type(loop).__module__.split(".")[0] == "uvloop"
    finally:
        loop.close()
