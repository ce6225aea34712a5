"""Reading an export for the queue: CSV, JSONL or a JSON list of canonical records, errors by line.

The rows are read with `serving.tables`, the reader of every table Raqib takes in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from serving.services.errors import describe_validation_error
from serving.services.schemas import CleanText, ExternalId
from serving.tables import Lines, Row, TableError, csv_header, csv_rows, json_document, jsonl_rows

ImportFormat = Literal["csv", "jsonl", "json"]

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/comma-separated-values"})
JSONL_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines", "text/jsonl"})
MAX_REPORTED_ERRORS = 20


class ImportFileError(ValueError):
    """A file that cannot be read as records at all (encoding, CSV or JSON syntax, no header)."""

    def __init__(self, code: str, message: str, line: int | None = None, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.field = field


@dataclass(frozen=True)
class RawRow:
    """One record as read, with where it came from ("line 3" of a file or "records[2]" of a JSON body)."""

    where: str
    line: int | None
    values: Mapping[str, Any]


@dataclass(frozen=True)
class RowError:
    """Why one record cannot be imported."""

    where: str
    line: int | None
    code: str
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form listed in a 422's `errors`."""
        return {
            "line": self.line,
            "where": self.where,
            "code": self.code,
            "field": self.field,
            "message": self.message,
        }


def _has_text(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty_text", "comment text is empty")
    return value


class ImportRecord(BaseModel):
    """The canonical columns a queue import reads (`label`, `source`, `created_at` are ignored)."""

    model_config = ConfigDict(extra="ignore")

    comment_id: ExternalId | None = None
    text: Annotated[CleanText, AfterValidator(_has_text)]
    article_id: ExternalId | None = None
    article_title: CleanText | None = None
    article_text: CleanText | None = None
    article_url: CleanText | None = None
    author: CleanText | None = None
    site: CleanText | None = None

    def resolved_comment_id(self) -> str:
        """The comment id, or a stable one derived from site and text when the export has none."""
        if self.comment_id:
            return self.comment_id
        digest = hashlib.sha256(f"{self.site or ''}\x1f{self.text}".encode()).hexdigest()
        return f"import-{digest[:16]}"

    def resolved_article_id(self) -> str | None:
        """The article id, or a stable one derived from title and text when only those are given."""
        if self.article_id:
            return self.article_id
        if not (self.article_title or self.article_text):
            return None
        seed = f"{self.site or ''}\x1f{self.article_title or ''}\x1f{self.article_text or ''}"
        return f"import-{hashlib.sha256(seed.encode()).hexdigest()[:16]}"


def detect_format(data: bytes, filename: str | None, content_type: str | None) -> ImportFormat:
    """CSV or JSONL (or a JSON list), from the file name, then the content type, then the first byte."""
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in CSV_TYPES:
        return "csv"
    if kind in JSONL_TYPES:
        return "jsonl"
    first = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        return "json"
    if first == b"{":
        return "jsonl"
    return "csv"


def _file_error(error: TableError) -> ImportFileError:
    """A table error as the import's: its code (a missing header is a CSV problem) and line."""
    code = "invalid_csv" if error.code == "missing_header" else error.code
    return ImportFileError(code, str(error), line=error.line)


def _rows(items: Iterator[Row | TableError]) -> Iterator[Row]:
    """The rows, stopping at the first that cannot be read: an import is all or nothing."""
    try:
        for item in items:
            if isinstance(item, TableError):
                raise _file_error(item)
            yield item
    except TableError as exc:  # the file as a whole, e.g. a quote that never closes
        raise _file_error(exc) from None


def read_csv(data: bytes) -> list[RawRow]:
    """Rows of a CSV file with a header line; empty cells are missing values."""
    lines = Lines.of_bytes(data, universal_newlines=True)
    try:
        header = csv_header(lines, strict=True)
    except TableError as exc:
        raise _file_error(exc) from None
    columns = [cell.strip() for cell in header]
    if not any(columns):
        raise ImportFileError("invalid_csv", "line 1: the CSV file has no header line", line=1)
    if "text" not in columns:
        raise ImportFileError("missing_field", "line 1: the CSV header has no 'text' column", 1, "text")
    rows: list[RawRow] = []
    for row in _rows(csv_rows(lines, columns, strict=True, short_rows=True)):
        if all(not cell.strip() for cell in row.values.values()):
            continue
        # An empty cell is a missing value, except the text, whose emptiness is its own error.
        values: dict[str, Any] = {
            column: cell if cell != "" or column == "text" else None for column, cell in row.values.items()
        }
        values.setdefault("text", "")
        rows.append(RawRow(where=f"line {row.line}", line=row.line, values=values))
    return rows


def read_jsonl(data: bytes) -> list[RawRow]:
    """One JSON object per line; blank lines are skipped."""
    return [
        RawRow(where=f"line {row.line}", line=row.line, values=row.values)
        for row in _rows(jsonl_rows(Lines.of_bytes(data, universal_newlines=True)))
    ]


def read_json_records(value: Any) -> list[RawRow]:
    """A JSON body: a list of records, or {"records": [...]}."""
    if isinstance(value, dict) and "records" in value:
        value = value["records"]
    if not isinstance(value, list):
        raise ImportFileError(
            "invalid_type", 'send a JSON list of records or {"records": [...]}', field="records"
        )
    rows: list[RawRow] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ImportFileError(
                "invalid_type", f"records[{index}]: not a JSON object", field=f"records.{index}"
            )
        rows.append(RawRow(where=f"records[{index}]", line=None, values=item))
    return rows


def read_file(data: bytes, filename: str | None, content_type: str | None) -> list[RawRow]:
    """The records of an uploaded file, whatever its format."""
    kind = detect_format(data, filename, content_type)
    if kind == "csv":
        return read_csv(data)
    if kind == "jsonl":
        return read_jsonl(data)
    try:
        value = json_document(data)
    except TableError as exc:
        raise _file_error(exc) from None
    return read_json_records(value)


def validate_rows(rows: list[RawRow], max_text_chars: int) -> tuple[list[ImportRecord], list[RowError]]:
    """Each row as an ImportRecord, or the errors (the first MAX_REPORTED_ERRORS) of the rows that fail."""
    records: list[ImportRecord] = []
    errors: list[RowError] = []
    for row in rows:
        try:
            record = ImportRecord.model_validate(row.values)
        except ValidationError as exc:
            code, message, field = describe_validation_error(exc.errors()[0], strip_body=False)
            errors.append(RowError(row.where, row.line, code, field, f"{row.where}: {field}: {message}"))
            continue
        if len(record.text) > max_text_chars:
            message = f"comment text has {len(record.text)} characters; the limit is {max_text_chars}"
            errors.append(
                RowError(row.where, row.line, "text_too_long", "text", f"{row.where}: text: {message}")
            )
            continue
        records.append(record)
    return records, errors[:MAX_REPORTED_ERRORS]
