"""Pure ASGI middleware: request ids, access log, metrics and 500s; request body size limits."""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable, Collection

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.errors import BodyTooLarge, error_payload, error_response
from serving.metrics import ServiceMetrics

access_logger = logging.getLogger("raqib.access")
error_logger = logging.getLogger("raqib.error")

REQUEST_ID_HEADER = "x-request-id"
UNMATCHED_ROUTE = "<unmatched>"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


class RequestContextMiddleware:
    """Give every request an id, log one access line, count it, and turn crashes into JSON 500s.

    The access line has method, route template, status, duration and request id only: never the
    query, the body or headers, so comment text and keys cannot leak into logs from here.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, known_routes: Collection[str]):
        self.app = app
        self.metrics = metrics
        self.known_routes = frozenset(known_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        supplied = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = supplied if _CLIENT_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Log where it failed but not str(exc): messages can quote the comment being scored.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            error_logger.error(
                "unhandled %s on %s %s (request id %s)\n%s",
                exc.__class__.__name__,
                scope["method"],
                self._route(scope),
                request_id,
                frames,
            )
            status = 500
            if not response_started:
                payload = error_payload("internal", f"internal error; quote request id {request_id}")
                payload["error"]["request_id"] = request_id
                await JSONResponse(payload, status_code=500)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = self._route(scope)
            self.metrics.requests.labels(route=route, method=scope["method"], status=str(status)).inc()
            self.metrics.request_seconds.labels(route=route).observe(elapsed)
            access_logger.info(
                "%s %s %d %.1fms request_id=%s", scope["method"], route, status, elapsed * 1000, request_id
            )

    def _route(self, scope: Scope) -> str:
        # The route template, never the raw path: bounded label values and nothing user-typed.
        route = scope.get("route")
        template = getattr(route, "path", None)
        if isinstance(template, str):
            return template
        path = scope.get("path", "")
        return path if path in self.known_routes else UNMATCHED_ROUTE


class BodyLimitMiddleware:
    """Refuse request bodies over a per-route byte limit with 413, before anything parses them.

    A declared Content-Length over the limit is refused without reading; otherwise the bytes are
    counted as they arrive, so a chunked or lying client is cut off at the limit as well.
    """

    def __init__(self, app: ASGIApp, limit_for_path: Callable[[str], int]):
        self.app = app
        self.limit_for_path = limit_for_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for_path(scope.get("path", ""))
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(limit)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Normally FastAPI turns this into a 413 itself; this covers a read outside its handler.
            if response_started:
                raise
            await self._too_large(limit)(scope, receive, send)

    @staticmethod
    def _too_large(limit: int) -> ASGIApp:
        return error_response(413, "body_too_large", f"request body is larger than {limit} bytes")
