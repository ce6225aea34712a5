"""One error shape for every failure: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.services.errors import ApiError, describe_validation_error

# Stable codes for HTTP errors raised by the framework itself (routing, body parsing).
STATUS_CODES = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


class BodyTooLarge(StarletteHTTPException):
    """Raised from inside the receive channel when a body grows past its limit."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=f"request body is larger than {limit} bytes")
        self.limit = limit


def error_payload(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """A JSONResponse in the API's error shape."""
    return JSONResponse(
        {**error_payload(code, message, field), **(extra or {})},
        status_code=status,
        headers=dict(headers or {}),
    )


async def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first: Mapping[str, Any] = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "malformed JSON")
        return error_response(400, "invalid_json", f"request body is not valid JSON: {detail}")
    if tuple(first.get("loc", ())) == ("body",) and isinstance(first.get("input"), bytes | bytearray):
        # FastAPI hands the raw bytes over when the Content-Type is not JSON.
        return error_response(
            415, "unsupported_media_type", "send the request body as JSON with Content-Type: application/json"
        )
    code, message, field = describe_validation_error(first)
    return error_response(422, code, message, field)


async def _http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    if exc.status_code == 400:
        # The only 400s the framework raises come from a body it could not decode.
        message = "request body could not be parsed as UTF-8 JSON"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers, exc.extra)


def install_error_handlers(app: FastAPI) -> None:
    """Route every framework and API error through the one error shape."""
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
    app.add_exception_handler(ApiError, _api_error_handler)
