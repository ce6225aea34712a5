"""A stand-in for Coral's GraphQL endpoint (`/api/graphql`), on loopback, for the integration tests.

It answers the two queries Raqib sends, `story(id)` and `comment(id)`, with objects shaped like
Coral's schema (coralproject/talk `server/src/core/server/graph/schema/schema.graphql`): Story
{id url metadata {title description section}}, Comment {id body status story author site
statusHistory {nodes {id status createdAt rejectionReason {code} moderator {id}}}}. It checks the
bearer token, can be switched "down" (503) to drill retries, and counts what it was asked.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "coral-pat-for-tests"
_OPERATION = re.compile(r"\b(story|comment)\s*\(")


class FakeCoral:
    """Stories and comments by id; `down` makes every request a 503."""

    def __init__(self) -> None:
        self.stories: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.down = False
        self.asked: Counter[str] = Counter()
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, answer = fake.answer(self.path, self.headers.get("Authorization"), body)
                raw = json.dumps(answer, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/api/graphql"

    def __enter__(self) -> FakeCoral:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_story(
        self, story_id: str, url: str, title: str, description: str = "", section: str = ""
    ) -> None:
        self.stories[story_id] = {
            "id": story_id,
            "url": url,
            "metadata": {"title": title, "description": description or None, "section": section or None},
        }

    def add_comment(
        self,
        comment_id: str,
        body: str,
        story_id: str,
        author_id: str,
        status: str = "NONE",
        history: list[tuple[str, str, str | None]] = (),  # type: ignore[assignment]
        site_id: str = "site-1",
    ) -> None:
        """`history`: (action id, status, rejection reason code or None), oldest first."""
        self.comments[comment_id] = {
            "id": comment_id,
            "body": body,
            "status": status,
            "story_id": story_id,
            "author": {"id": author_id},
            "site": {"id": site_id},
            "statusHistory": {
                "nodes": [
                    {
                        "id": action_id,
                        "status": action_status,
                        "createdAt": "2026-12-02T10:00:00.000Z",
                        "rejectionReason": {"code": code} if code else None,
                        "moderator": {"id": "moderator-7"},
                    }
                    for action_id, action_status, code in history
                ]
            },
        }

    def answer(self, path: str, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        if self.down:
            return 503, {"error": "service unavailable"}
        if path != "/api/graphql":
            return 404, {"error": "not found"}
        if authorization != f"Bearer {TOKEN}":
            return 401, {"errors": [{"message": "not authorized"}]}
        request = json.loads(body)
        query, variables = request["query"], request.get("variables") or {}
        self.queries.append(query)
        operation = _OPERATION.search(query)
        if operation is None:
            return 200, {"errors": [{"message": "unknown query"}]}
        kind = operation.group(1)
        self.asked[kind] += 1
        if kind == "story":
            return 200, {"data": {"story": self.stories.get(variables.get("id"))}}
        comment = self.comments.get(variables.get("id"))
        if comment is None:
            return 200, {"data": {"comment": None}}
        node = {key: value for key, value in comment.items() if key != "story_id"}
        node["story"] = self.stories.get(
            comment["story_id"], {"id": comment["story_id"], "url": "", "metadata": None}
        )
        return 200, {"data": {"comment": node}}
