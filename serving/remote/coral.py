"""Coral's GraphQL API: a story's title and description, a comment's body and the moderator's decision.

Coral's webhooks and its External Moderation Phase carry ids only (no comment id in the phase, no
story title anywhere), so Raqib asks Coral's GraphQL endpoint (`/api/graphql`, `Authorization:
Bearer <personal access token>`). Every field queried below is checked against Coral's schema,
coralproject/talk `server/src/core/server/graph/schema/schema.graphql` (v9.11): `Query.story(id)`,
`Query.comment(id)`, `Story.url`, `Story.metadata { title description section }`, `Comment.body`,
`Comment.status` (COMMENT_STATUS), `Comment.story`, `Comment.author`, `Comment.site` and
`Comment.statusHistory` (a CommentModerationActionConnection, "the most recent last", readable by
MODERATOR and ADMIN tokens only), whose `CommentModerationAction.rejectionReason.code` is a
REJECTION_REASON_CODE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger("raqib.remote.coral")

STORY_QUERY = """
query RaqibStory($id: ID!) {
  story(id: $id) { id url metadata { title description section } }
}
"""

COMMENT_QUERY = """
query RaqibComment($id: ID!) {
  comment(id: $id) {
    id
    body
    status
    story { id url metadata { title description section } }
    author { id }
    site { id }
    statusHistory(first: 50) {
      nodes { id status createdAt rejectionReason { code } moderator { id } }
    }
  }
}
"""


class CoralUnavailable(Exception):
    """Coral did not answer usefully (network, 5xx, 401/403, GraphQL errors): worth retrying later."""


@dataclass(frozen=True)
class CoralStoryInfo:
    """A story as Coral scraped it."""

    id: str
    url: str | None
    title: str | None
    description: str | None
    section: str | None


@dataclass(frozen=True)
class CoralModeration:
    """One entry of a comment's status history."""

    id: str
    status: str
    rejection_code: str | None
    moderator_id: str | None = None


@dataclass(frozen=True)
class CoralCommentInfo:
    """A comment, its story, and how moderators have decided on it (oldest first)."""

    id: str
    body: str
    status: str
    story: CoralStoryInfo | None
    author_id: str | None
    site_id: str | None
    history: tuple[CoralModeration, ...]

    def latest(self) -> CoralModeration | None:
        """The latest moderation action whose status is the comment's current status."""
        for action in reversed(self.history):
            if action.status == self.status:
                return action
        return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _story(node: Any) -> CoralStoryInfo | None:
    if not isinstance(node, dict) or not node.get("id"):
        return None
    metadata = _object(node.get("metadata"))
    return CoralStoryInfo(
        id=str(node["id"]),
        url=_text(node.get("url")),
        title=_text(metadata.get("title")),
        description=_text(metadata.get("description")),
        section=_text(metadata.get("section")),
    )


def _history(node: Any) -> tuple[CoralModeration, ...]:
    nodes = node.get("nodes") if isinstance(node, dict) else None
    actions = []
    for action in nodes if isinstance(nodes, list) else []:
        if not isinstance(action, dict) or not action.get("status"):
            continue
        reason = action.get("rejectionReason")
        actions.append(
            CoralModeration(
                id=str(action.get("id") or ""),
                status=str(action["status"]),
                rejection_code=_text(reason.get("code")) if isinstance(reason, dict) else None,
                moderator_id=_text(_object(action.get("moderator")).get("id")),
            )
        )
    return tuple(actions)


class CoralGraphQL:
    """A small synchronous client (it runs on background threads, never in a request's path)."""

    def __init__(
        self, url: str, token: str, timeout_s: float = 5.0, transport: httpx.BaseTransport | None = None
    ):
        self.url = url
        self._client = httpx.Client(
            timeout=timeout_s,
            transport=transport,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "Raqib (Coral integration)"},
            follow_redirects=False,
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._client.post(self.url, json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            raise CoralUnavailable(f"Coral GraphQL unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise CoralUnavailable(f"Coral GraphQL answered HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError:
            raise CoralUnavailable("Coral GraphQL answered something that is not JSON") from None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            # A token without the MODERATOR/ADMIN role fails on statusHistory: say so, and retry
            # later (the operator can fix the token; the event is kept).
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            raise CoralUnavailable(f"Coral GraphQL errors: {messages[:300]}")
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise CoralUnavailable("Coral GraphQL answered without data")
        return data

    def story(self, story_id: str) -> CoralStoryInfo | None:
        """The story's URL and scraped metadata; None when Coral has no such story."""
        return _story(self._query(STORY_QUERY, {"id": story_id}).get("story"))

    def comment(self, comment_id: str) -> CoralCommentInfo | None:
        """The comment with its body (HTML), story, author and status history; None when unknown."""
        node = self._query(COMMENT_QUERY, {"id": comment_id}).get("comment")
        if not isinstance(node, dict) or not node.get("id"):
            return None
        author, site, body = _object(node.get("author")), _object(node.get("site")), node.get("body")
        return CoralCommentInfo(
            id=str(node["id"]),
            body=body if isinstance(body, str) else "",
            status=str(node.get("status") or ""),
            story=_story(node.get("story")),
            author_id=_text(author.get("id")),
            site_id=_text(site.get("id")),
            history=_history(node.get("statusHistory")),
        )
