"""Rows of CSV, TSV and JSON Lines tables, read from bytes or a binary file, each with its line number.

Every table Raqib takes in is read here: canonical data files (the data contract), CMS and
annotation-tool exports (`raqib score`, `raqib import`) and the moderators' queue import. The rules
are the same for all of them:

- lines are decoded strictly as UTF-8, and a byte-order mark at the start of the file (Excel writes
  one) is dropped; `\\n` and `\\r\\n` end a line, and so does a lone `\\r` when the caller reads
  old Mac exports (`universal_newlines`);
- a CSV record may span lines inside quotes and is numbered by the line it starts on; a field may
  be as large as an article body (CSV_FIELD_LIMIT instead of the csv module's 128 KiB);
- a problem with one row (not UTF-8, not JSON, not an object, the wrong number of fields) is a
  TableError yielded in the row's place, so each caller decides whether it stops the read or is
  skipped; a problem with the table as a whole (no header, broken quoting) is raised.

A TableError carries the line and a message without a location, so callers word it their own way
("file:3: …" in a terminal, "line 3: …" in an API answer). Standard library only: the server and
the training tools both read tables with it, and it imports nothing from serving but the schema.
"""

from __future__ import annotations

import csv
import io
import json
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, Literal

# Article bodies travel in CSV cells; 16 MiB is far above any article and still bounds one field.
CSV_FIELD_LIMIT: Final = 16 * 1024 * 1024
BYTE_ORDER_MARK: Final = "\ufeff"

ErrorCode = Literal["invalid_encoding", "invalid_json", "invalid_type", "invalid_csv", "missing_header"]


class TableError(ValueError):
    """A row or a table that cannot be read: a machine-readable code, the 1-based line and why."""

    def __init__(self, code: ErrorCode, line: int | None, message: str) -> None:
        self.code: ErrorCode = code
        self.line = line
        self.message = message
        super().__init__(message if line is None else f"line {line}: {message}")


@dataclass(frozen=True, slots=True)
class Row:
    """One record: the line it starts on, its values, and the bytes read up to its end (for progress)."""

    line: int
    values: dict[str, Any]
    bytes_read: int


def allow_large_fields() -> None:
    """Raise the csv module's per-field limit (process-wide) to CSV_FIELD_LIMIT."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)


class Lines:
    """The lines of a binary stream decoded as UTF-8, counting lines and bytes as they are read.

    A line that is not UTF-8 is decoded with replacement characters, which keep its quotes and
    separators, so a CSV parser stays in step; its TableError waits in `pending` until the reader
    puts it in place of the record that held the line. `lines_before` and `limit` read a slice of a
    file (the stream positioned at its first byte) with the whole file's line numbers. With
    `universal_newlines` a lone `\\r` ends a line too; without, it stays inside its line (and a CSV
    parser refuses it outside quotes).

    It is its own iterator, so a header reader and a row reader can take turns on one stream.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        lines_before: int = 0,
        limit: int | None = None,
        universal_newlines: bool = False,
    ) -> None:
        self.stream = stream
        self.universal_newlines = universal_newlines
        self.number = lines_before
        self.limit = limit
        self.bytes_read = 0
        self.pending: list[TableError] = []
        self._pieces: deque[bytes] = deque()

    @classmethod
    def of_bytes(cls, data: bytes, *, universal_newlines: bool = False) -> Lines:
        """The lines of an in-memory file (an upload, say)."""
        return cls(io.BytesIO(data), universal_newlines=universal_newlines)

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        if self.limit is not None and self.bytes_read >= self.limit:
            raise StopIteration
        if not self._pieces:
            raw = self.stream.readline()
            if not raw:
                raise StopIteration
            # bytes.splitlines ends lines at \n, \r\n and a lone \r, as a text file in universal mode.
            split = self.universal_newlines and b"\r" in raw
            self._pieces.extend(raw.splitlines(keepends=True) if split else (raw,))
        piece = self._pieces.popleft()
        self.number += 1
        self.bytes_read += len(piece)
        try:
            line = piece.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"not valid UTF-8 (byte {exc.start}: {exc.reason})"
            self.pending.append(TableError("invalid_encoding", self.number, message))
            line = piece.decode("utf-8", errors="replace")
        return line.removeprefix(BYTE_ORDER_MARK) if self.number == 1 else line

    def take_pending(self) -> list[TableError]:
        """The undecodable lines met since the last call."""
        pending, self.pending = self.pending, []
        return pending


def csv_header(lines: Lines, delimiter: str = ",", *, strict: bool = False) -> list[str]:
    """The first record of a CSV table: its column names, as written.

    Raises TableError when there is no header (an empty file or a blank first line), when the
    header line is not UTF-8 or its quoting is broken. `strict` refuses stray quotes inside fields.
    """
    allow_large_fields()
    first_line = lines.number + 1
    try:
        header = next(csv.reader(lines, delimiter=delimiter, strict=strict), None)
    except csv.Error as exc:
        raise TableError("invalid_csv", first_line, f"malformed CSV: {exc}") from None
    undecodable = lines.take_pending()
    if undecodable:
        raise undecodable[0]
    if not header:
        raise TableError("missing_header", first_line, "expected a header row (the file is empty)")
    return header


def csv_rows(
    lines: Lines,
    header: Sequence[str],
    delimiter: str = ",",
    *,
    strict: bool = False,
    short_rows: bool = False,
) -> Iterator[Row | TableError]:
    """Each CSV record after the header as a Row keyed by `header`, or the TableError in its place.

    Blank lines are skipped. A record with more fields than the header, or fewer unless
    `short_rows` (then the missing columns are absent from its values), is an error. Broken quoting
    raises TableError naming the line the broken record starts on: nothing after it can be trusted.
    """
    allow_large_fields()
    reader = csv.reader(lines, delimiter=delimiter, strict=strict)
    width = len(header)
    previous_end = lines.number
    while True:
        start = previous_end + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # An undecodable line met on the way is the earlier problem, and may be the cause.
            undecodable = lines.take_pending()
            if undecodable:
                raise undecodable[0] from None
            raise TableError("invalid_csv", start, f"malformed CSV: {exc}") from None
        previous_end = lines.number
        undecodable = lines.take_pending()
        if undecodable:
            yield from undecodable
            continue
        if not values:
            continue
        if len(values) > width or (len(values) < width and not short_rows):
            yield TableError("invalid_csv", start, f"{len(values)} fields where the header has {width}")
            continue
        yield Row(start, dict(zip(header, values, strict=False)), lines.bytes_read)


def jsonl_rows(lines: Lines) -> Iterator[Row | TableError]:
    """Each non-blank line of a JSON Lines table as a Row holding its object, or a TableError instead."""
    for line in lines:
        undecodable = lines.take_pending()
        if undecodable:
            yield from undecodable
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield TableError("invalid_json", lines.number, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield TableError("invalid_type", lines.number, "each line must be a JSON object")
            continue
        yield Row(lines.number, value, lines.bytes_read)


def decode_text(data: bytes) -> str:
    """A whole file as text: strict UTF-8 without its byte-order mark; TableError names the bad line."""
    try:
        return data.decode("utf-8").removeprefix(BYTE_ORDER_MARK)
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        message = f"not valid UTF-8 (byte {exc.start - line_start}: {exc.reason})"
        raise TableError("invalid_encoding", data.count(b"\n", 0, exc.start) + 1, message) from None


def json_document(data: bytes) -> Any:
    """A whole JSON file (an export's array of records, a request body); TableError names the line."""
    try:
        return json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} (column {exc.colno})"
        raise TableError("invalid_json", exc.lineno, message) from None
