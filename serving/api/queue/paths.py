"""Where the queue answers (its URL paths) and where its page's files are."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

QUEUE_PATH = "/queue"
LOGIN_PATH = "/queue/login"
LOGOUT_PATH = "/queue/logout"
JSON_PREFIX = "/v1/queue/"
ITEMS_PATH = "/v1/queue/items"
DECISIONS_PATH = "/v1/queue/decisions"
UNDO_PATH = "/v1/queue/undo"
IMPORT_PATH = "/v1/queue/import"
SHADOW_PATH = "/v1/queue/shadow"
STATIC_PREFIX = "/static"

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"
STRINGS_FILE = STATIC_DIR / "queue-strings.json"


def root_path(request: Request) -> str:
    """The prefix the app is mounted under (behind a proxy), without a trailing slash; "" at the root."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def is_https(request: Request) -> bool:
    """True when the request came over https, so the cookies set in answer to it are `Secure`."""
    return request.url.scheme == "https"
