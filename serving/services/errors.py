"""The one error a service raises for a caller to see: status, stable code, message, field.

Services raise it; serving/api/errors.py turns it into the API's one error shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

# pydantic error types that mean "wrong JSON type here", all reported as one code.
_TYPE_ERRORS = frozenset(
    {
        "string_type",
        "int_type",
        "int_parsing",
        "float_type",
        "bool_type",
        "dict_type",
        "list_type",
        "model_type",
        "model_attributes_type",
        "literal_error",
        "none_required",
        "is_instance_of",
    }
)
_CUSTOM_CODES = frozenset({"empty_text", "invalid_unicode", "text_too_long", "invalid_label"})


class ApiError(Exception):
    """An error to answer with: HTTP status, stable code, message and the offending field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def dotted_field(loc: Sequence[Any], strip_body: bool = True) -> str | None:
    """`("body", "comment", "text")` → `"comment.text"`; None when the error is about the whole body."""
    parts = list(loc)
    if strip_body and parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(str(part) for part in parts) or None


def validation_error_code(error_type: str) -> str:
    """The API code for a pydantic error type."""
    if error_type in _CUSTOM_CODES:
        return error_type
    if error_type == "missing":
        return "missing_field"
    if error_type in _TYPE_ERRORS:
        return "invalid_type"
    return "invalid_value"


def describe_validation_error(
    error: Mapping[str, Any], strip_body: bool = True
) -> tuple[str, str, str | None]:
    """(code, message, field) of one pydantic error."""
    return (
        validation_error_code(str(error.get("type", ""))),
        str(error.get("msg", "invalid value")),
        dotted_field(error.get("loc", ()), strip_body),
    )


def validation_api_error(exc: ValidationError, prefix: str = "") -> ApiError:
    """The ApiError for a pydantic error raised while parsing a body by hand (`prefix` names its place)."""
    first: Mapping[str, Any] = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "malformed JSON")
        return ApiError(400, "invalid_json", f"request body is not valid JSON: {detail}")
    code, message, field = describe_validation_error(first, strip_body=False)
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    return ApiError(422, code, message, field)


def parse_body(model: type[M], body: bytes) -> M:
    """Validate raw JSON bytes (read once for a signature check) as `model`, or raise ApiError."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_api_error(exc) from None


def parse_value(model: type[M], value: Any, prefix: str) -> M:
    """Validate an already-parsed value (an event's `data`) as `model`; errors name `prefix.field`."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise validation_api_error(exc, prefix) from None
