"""After a promotion, retrain asks each running server to reload, with the admin key."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from training.labels.retrain import notify_servers

pytestmark = pytest.mark.unit


def test_notify_posts_reload_with_the_admin_key_and_reports_each_server() -> None:
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"status": "reloaded", "model": {"version": "7"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        live = f"http://127.0.0.1:{server.server_address[1]}"
        outcomes = notify_servers([live, "http://127.0.0.1:9"], admin_key="s3cret", timeout=2)
    finally:
        server.shutdown()
    assert seen == [("/v1/admin/reload", "Bearer s3cret")]
    assert outcomes[live] == "reloaded 7"
    assert outcomes["http://127.0.0.1:9"].startswith("unreachable")
