"""The queue's security headers: a strict Content-Security-Policy, no framing, no sniffing, no caching."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.queue.paths import JSON_PREFIX, QUEUE_PATH, STATIC_PREFIX

# The page loads its script, styles and strings from the service itself and has no inline script
# or style, so nothing but 'self' is needed (data: for the empty favicon).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _app_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class QueueSecurityHeadersMiddleware:
    """Security headers on the queue's pages, JSON and static assets; no caching of comment text."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _app_path(scope)
        is_static = path.startswith(STATIC_PREFIX + "/")
        if not (is_static or path == QUEUE_PATH or path.startswith((QUEUE_PATH + "/", JSON_PREFIX))):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not is_static:
                    # Pages and JSON carry comment text and CSRF tokens: never kept in any cache.
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
