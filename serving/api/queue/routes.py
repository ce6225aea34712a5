"""The moderators' queue as the app mounts it: its routers, its middleware and its static files.

The queue is split by concern: `paths` (URLs and files), `security` (headers), `i18n` (strings,
language, rendering), `pages` (login and the queue page), `schemas` and `endpoints` (the JSON API,
which calls `serving.services.queue`), `auth` (moderators and sessions). This module gathers what
`serving.api.app` needs under one name.
"""

from __future__ import annotations

from serving.api.queue.endpoints import router
from serving.api.queue.i18n import LANG_COOKIE, ui_strings
from serving.api.queue.pages import page_router
from serving.api.queue.paths import (
    DECISIONS_PATH,
    IMPORT_PATH,
    ITEMS_PATH,
    LOGIN_PATH,
    LOGOUT_PATH,
    QUEUE_PATH,
    SHADOW_PATH,
    STATIC_DIR,
    STATIC_PREFIX,
    UNDO_PATH,
)
from serving.api.queue.security import CONTENT_SECURITY_POLICY, QueueSecurityHeadersMiddleware

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DECISIONS_PATH",
    "IMPORT_PATH",
    "ITEMS_PATH",
    "LANG_COOKIE",
    "LOGIN_PATH",
    "LOGOUT_PATH",
    "QUEUE_PATH",
    "SHADOW_PATH",
    "STATIC_DIR",
    "STATIC_PREFIX",
    "UNDO_PATH",
    "QueueSecurityHeadersMiddleware",
    "page_router",
    "router",
    "ui_strings",
]
