"""Pure ASGI middleware: request ids, access log, metrics and 500s; request body size limits.

Also the JSON log format: one object per line, with the request id of the request being answered.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import secrets
import time
import traceback
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.errors import BodyTooLarge, error_payload, error_response
from serving.runtime.metrics import ServiceMetrics

access_logger = logging.getLogger("raqib.access")
error_logger = logging.getLogger("raqib.error")

REQUEST_ID_HEADER = "x-request-id"
UNMATCHED_ROUTE = "<unmatched>"
# Handlers put headers for the response, whatever it turns out to be, in request.state.response_headers.
RESPONSE_HEADERS_STATE = "response_headers"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
# The id of the request this task (or the threadpool call it made) is answering, for every log line.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "raqib_request_id", default=None
)
# Fields of the access line that the JSON format writes as fields of their own.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")
_REQUEST_ID_HEADER_RAW = REQUEST_ID_HEADER.encode("latin-1")
# Children of the labelled metrics kept per (route, method, status): `labels()` costs a few µs a call.
_MAX_CACHED_LABELS = 1024


class RequestIds:
    """Request ids: 32 hex digits, a random half chosen once per process and a counter.

    uuid4() read the OS's random source on every request, and that system call releases the GIL:
    under load the audit writer thread took it each time and the request waited for it back. Ids
    only need to be unique (they name a request in the logs), not unguessable.
    """

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        """A new id; a forked worker draws its own random half."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._prefix = secrets.token_hex(8)
            self._counter = itertools.count()
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


request_ids = RequestIds()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the access line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON object (newlines in messages and tracebacks are escaped)."""
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id:
            payload["request_id"] = request_id
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                payload[field] = getattr(record, field)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


class RequestContextMiddleware:
    """Give every request an id, log one access line, count it, and turn crashes into JSON 500s.

    The access line has method, route template, status, duration and request id only: never the
    query, the body or headers, so comment text and keys cannot leak into logs from here.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, known_routes: Collection[str]):
        self.app = app
        self.metrics = metrics
        self.known_routes = frozenset(known_routes)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        supplied = _header(scope, _REQUEST_ID_HEADER_RAW)
        request_id = supplied if _CLIENT_REQUEST_ID.fullmatch(supplied) else request_ids.next()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        context_token = current_request_id.set(request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                for name, value in (state.get(RESPONSE_HEADERS_STATE) or {}).items():
                    if name not in headers:
                        headers[name] = value
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
            method = scope["method"]
            count, seconds = self._metrics_for(route, method, status)
            count.inc()
            seconds.observe(elapsed)
            duration_ms = round(elapsed * 1000, 1)
            # The peer's address, or the reader's when uvicorn trusts the proxy in front (proxy headers).
            client = scope.get("client")
            client_host = client[0] if client else "-"
            if access_logger.isEnabledFor(logging.INFO):
                # makeRecord + handle is what Logger.info does, less finding the caller's file and
                # line by walking the stack (no format shows them for this line).
                access_logger.handle(
                    access_logger.makeRecord(
                        access_logger.name,
                        logging.INFO,
                        __file__,
                        0,
                        "%s %s %d %.1fms request_id=%s client=%s",
                        (method, route, status, duration_ms, request_id, client_host),
                        None,
                        extra={
                            "client": client_host,
                            "method": method,
                            "path": route,
                            "status": status,
                            "duration_ms": duration_ms,
                        },
                    )
                )
            current_request_id.reset(context_token)

    def _metrics_for(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(route=route, method=method, status=str(status)),
                self.metrics.request_seconds.labels(route=route),
            )
            # Routes are templates and statuses few; methods are whatever clients send, so bounded.
            if len(self._children) < _MAX_CACHED_LABELS:
                self._children[key] = children
        return children

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

    def __init__(
        self,
        app: ASGIApp,
        limit_for_path: Callable[[str], int],
        too_large_for_path: Callable[[str, int], ASGIApp] | None = None,
    ):
        self.app = app
        self.limit_for_path = limit_for_path
        # Integrations answer in their own protocol's error shape, 413 included.
        self.too_large_for_path = too_large_for_path or (lambda _path, limit: too_large(limit))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.limit_for_path(path)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and _exceeds(declared, limit):
            await self.too_large_for_path(path, limit)(scope, receive, send)
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
            await self.too_large_for_path(path, limit)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    """A request header's value ('' when absent), read from the raw list (names are lower-case in ASGI)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _exceeds(content_length: str, limit: int) -> bool:
    """True when a declared Content-Length is a number over `limit` (the server refuses malformed ones)."""
    # "²".isdigit() is true yet int() refuses it, as it refuses over 4300 digits: ASCII digits, and
    # any number too long to compare is over every limit.
    if not (content_length.isascii() and content_length.isdigit()):
        return False
    digits = content_length.lstrip("0")
    return len(digits) > 18 or int(digits or "0") > limit


def too_large_message(limit: int) -> str:
    """What a 413 says, in every error shape."""
    return f"request body is larger than {limit} bytes"


def too_large(limit: int) -> ASGIApp:
    """The API's own 413 body_too_large."""
    return error_response(413, "body_too_large", too_large_message(limit))
