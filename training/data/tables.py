"""Table files on disk: CSV/TSV/JSONL/Parquet read in chunks or slices, and written back.

`raqib score` streams exports through these readers and writers, `raqib import` reads annotation
tools' exports with them, and the Dask engine reads one slice of a file per task. Decoding, line
numbers and row errors come from `serving.tables`, so every table Raqib reads follows one set of
rules; this module adds the file paths, Parquet, chunking and slicing.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from serving.tables import Lines, Row, TableError, allow_large_fields, csv_header, csv_rows, jsonl_rows

FORMATS = ("csv", "tsv", "jsonl", "parquet")
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


class TableInputError(ValueError):
    """A row or file that cannot be read; names the file, the line (or Parquet row) and the field."""

    def __init__(self, path: str | Path, number: int | None, field: str | None, message: str, unit: str):
        self.path = str(path)
        self.number = number
        self.field = field
        self.message = message
        self.unit = unit
        where = self.path
        if number is not None:
            where += f":{number}" if unit == "line" else f": row {number}"
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}")

    @classmethod
    def at_line(cls, path: str | Path, error: TableError) -> TableInputError:
        """A serving.tables error located in its file."""
        return cls(path, error.line, None, error.message, "line")

    def as_record(self) -> dict[str, object]:
        """The error as one line of the `.errors.jsonl` side file."""
        return {self.unit: self.number, "field": self.field, "error": self.message}


def delimiter_of(fmt_or_suffix: str) -> str:
    """Tab for TSV (format name or file suffix), comma otherwise."""
    return "\t" if fmt_or_suffix.lower().lstrip(".") == "tsv" else ","


# --- reading CSV and JSONL ----------------------------------------------------------------------


@dataclass(frozen=True)
class TextSlice:
    """A stretch of a CSV/JSONL export that starts on a record boundary, to be read on its own."""

    start: int  # byte offset of its first record
    stop: int  # byte offset where the next slice starts
    lines_before: int  # lines of the file before `start`, so errors keep the whole file's line numbers


NumberedRow = tuple[int, dict[str, Any], int]  # (line or row number, values, progress so far)


def read_csv_header(path: Path, delimiter: str = ",") -> list[str]:
    """The header row of a CSV file; TableInputError if it is missing, not UTF-8 or has duplicates."""
    with path.open("rb") as handle:
        try:
            header = csv_header(Lines(handle), delimiter)
        except TableError as exc:
            raise TableInputError.at_line(path, exc) from None
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise TableInputError(path, 1, None, f"duplicate column(s) in header: {duplicates}", "line")
    return header


def _open_lines(handle: IO[bytes], part: TextSlice | None) -> Lines:
    if part is None:
        return Lines(handle)
    handle.seek(part.start)
    return Lines(handle, lines_before=part.lines_before, limit=part.stop - part.start)


def _numbered(
    path: Path, rows: Iterator[Row | TableError], skip_bad: bool, errors: list[TableInputError]
) -> Iterator[NumberedRow]:
    """(number, values, bytes read) per readable row; a bad row raises, or with `skip_bad` joins `errors`."""
    try:
        for row in rows:
            if isinstance(row, TableError):
                if not skip_bad:
                    raise TableInputError.at_line(path, row)
                errors.append(TableInputError.at_line(path, row))
                continue
            yield row.line, row.values, row.bytes_read
    except TableError as exc:  # the table as a whole, e.g. broken quoting: never skipped
        raise TableInputError.at_line(path, exc) from None


def iter_csv(
    path: Path,
    delimiter: str,
    skip_bad: bool,
    errors: list[TableInputError],
    part: TextSlice | None = None,
) -> Iterator[tuple[int, dict[str, str], int]]:
    """(line the record starts on, values by header column, bytes read) per CSV record.

    A row with the wrong number of fields or a line that is not UTF-8 raises, or with `skip_bad`
    lands in `errors` and the row is skipped. Malformed quoting always raises. With `part`, only
    the records of that slice are read (bytes read then count from the slice's start).
    """
    header = read_csv_header(path, delimiter)
    with path.open("rb") as handle:
        lines = _open_lines(handle, part)
        if part is None:
            csv_header(lines, delimiter)  # checked above; this only steps over it
        yield from _numbered(path, csv_rows(lines, header, delimiter), skip_bad, errors)


def iter_jsonl(
    path: Path, skip_bad: bool, errors: list[TableInputError], part: TextSlice | None = None
) -> Iterator[NumberedRow]:
    """(line number, object, bytes read) per non-blank line; a bad line raises or lands in `errors`."""
    with path.open("rb") as handle:
        yield from _numbered(path, jsonl_rows(_open_lines(handle, part)), skip_bad, errors)


# --- reading exports in chunks ------------------------------------------------------------------


@dataclass
class Chunk:
    """Up to chunk-size readable rows as (line or row number, values), plus rows that failed."""

    rows: list[tuple[int, dict[str, Any]]]
    errors: list[TableInputError]
    done: int  # bytes read so far (CSV/JSONL) or rows read so far (Parquet)


def chunk_rows(
    rows: Iterable[NumberedRow],
    errors: list[TableInputError],
    chunk_size: int,
    total: int,
) -> Iterator[Chunk]:
    """Group (number, values, progress) rows into chunks; `errors` is the list the row source fills."""
    batch: list[tuple[int, dict[str, Any]]] = []
    for number, row, done in rows:
        batch.append((number, row))
        if len(batch) >= chunk_size:
            # The source keeps appending to this very list, so hand over a copy and empty it.
            yield Chunk(batch, list(errors), done)
            batch = []
            errors.clear()
    yield Chunk(batch, list(errors), total)


class ExportReader:
    """Streams an export in chunks; `columns` is known before the first chunk is scored."""

    unit = "line"

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = []

    @property
    def total(self) -> int:
        """The progress total: the file size in bytes (rows for Parquet)."""
        return self.path.stat().st_size

    def rows(self, skip_bad: bool, errors: list[TableInputError]) -> Iterator[NumberedRow]:
        """(number, values, progress) per readable row."""
        raise NotImplementedError  # pragma: no cover - every reader overrides it

    def chunks(self, chunk_size: int, skip_bad: bool) -> Iterator[Chunk]:
        """Chunks of at most chunk_size readable rows, with the rows that failed since the last one."""
        errors: list[TableInputError] = []
        return chunk_rows(self.rows(skip_bad, errors), errors, chunk_size, self.total)


class CsvReader(ExportReader):
    """CSV/TSV via the csv module over strictly decoded lines, so errors keep their line number."""

    def __init__(self, path: Path, delimiter: str = ","):
        super().__init__(path)
        self.delimiter = delimiter
        self.columns = read_csv_header(path, delimiter)

    def rows(self, skip_bad: bool, errors: list[TableInputError]) -> Iterator[NumberedRow]:
        """Records keyed by header column; a row with the wrong field count is an error."""
        return iter_csv(self.path, self.delimiter, skip_bad, errors)


class JsonlReader(ExportReader):
    """JSON Lines, one object per line; `columns` are the keys seen in the first chunk (or all)."""

    def __init__(self, path: Path, chunk_size: int, all_columns: bool, skip_bad: bool):
        super().__init__(path)
        # CSV and Parquet output need every column up front, so a first pass collects them (and
        # fails fast on a broken line before any scoring). JSONL output keeps each row's own keys.
        seen: dict[str, None] = {}
        for count, (_, row, _) in enumerate(iter_jsonl(path, skip_bad, errors=[]), start=1):
            seen.update(dict.fromkeys(row))
            if not all_columns and count >= chunk_size:
                break
        self.columns = list(seen)

    def rows(self, skip_bad: bool, errors: list[TableInputError]) -> Iterator[NumberedRow]:
        """Parsed lines; invalid JSON or UTF-8 names the line."""
        return iter_jsonl(self.path, skip_bad, errors)


class ParquetReader(ExportReader):
    """Parquet record batches; rows are numbered from 1 in file order."""

    unit = "row"

    def __init__(self, path: Path):
        super().__init__(path)
        import pyarrow.parquet as pq

        try:
            self.file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for damaged files
            raise TableInputError(path, None, None, f"not a readable Parquet file: {exc}", "row") from None
        self.schema = self.file.schema_arrow
        self.columns = list(self.schema.names)

    @property
    def total(self) -> int:
        """Rows in the file (from the footer)."""
        return int(self.file.metadata.num_rows)

    def chunks(self, chunk_size: int, skip_bad: bool) -> Iterator[Chunk]:
        """One chunk per record batch of at most chunk_size rows."""
        return parquet_chunks(self.file, self.path, chunk_size)


def parquet_chunks(
    file: Any, path: Path, chunk_size: int, row_groups: Sequence[int] | None = None, rows_before: int = 0
) -> Iterator[Chunk]:
    """Chunks of a ParquetFile (or of some of its row groups), rows numbered from 1 in file order."""
    done = rows_before
    try:
        for batch in file.iter_batches(batch_size=chunk_size, row_groups=row_groups):
            rows = [(done + i + 1, row) for i, row in enumerate(batch.to_pylist())]
            done += batch.num_rows
            yield Chunk(rows, [], done)
    except OSError as exc:  # a truncated column chunk surfaces mid-file
        raise TableInputError(path, done + 1, None, f"unreadable Parquet data: {exc}", "row") from None


def slice_text_export(
    path: Path, fmt: str, records_per_slice: int, progress: Callable[[int, int], None] | None = None
) -> list[tuple[TextSlice, int]]:
    """Cut a CSV/TSV/JSONL export into slices of `records_per_slice` records (the last may hold fewer).

    Returns (slice, records) pairs. Boundaries fall between records, never inside a quoted field
    that spans lines, so each slice can be read on its own with `iter_csv`/`iter_jsonl(part=...)`.
    Counting non-blank records like the readers do keeps slices aligned with their chunks.
    """
    size = path.stat().st_size
    slices: list[tuple[TextSlice, int]] = []
    report = progress or (lambda *_: None)
    with path.open("rb") as handle:
        # An undecodable line is the reading worker's to report, with its line number: here its
        # replacement characters only have to keep the record boundaries where they are.
        lines = Lines(handle)
        records: Iterator[bool]
        if fmt in ("csv", "tsv"):
            read_csv_header(path, delimiter_of(fmt))
            allow_large_fields()
            reader = csv.reader(lines, delimiter=delimiter_of(fmt))
            next(reader)
            records = (bool(values) for values in reader)
        else:
            records = (bool(line.strip()) for line in lines)
        start, lines_before, count = lines.bytes_read, lines.number, 0
        try:
            for is_record in records:
                count += is_record
                if count == records_per_slice:
                    slices.append((TextSlice(start, lines.bytes_read, lines_before), count))
                    start, lines_before, count = lines.bytes_read, lines.number, 0
                    report(start, size)
        except csv.Error:
            # Malformed quoting: the rest becomes one slice, whose reader raises it with its line.
            count = max(count, 1)
    if count or not slices:
        slices.append((TextSlice(start, size, lines_before), count))
    else:  # only blank lines after the last full slice
        last, last_count = slices[-1]
        slices[-1] = (TextSlice(last.start, size, last.lines_before), last_count)
    report(size, size)
    return slices


def open_reader(path: Path, fmt: str, chunk_size: int, output_format: str, skip_bad: bool) -> ExportReader:
    """The streaming reader for an export's format."""
    if fmt in ("csv", "tsv"):
        return CsvReader(path, delimiter=delimiter_of(fmt))
    if fmt == "jsonl":
        return JsonlReader(path, chunk_size, all_columns=output_format != "jsonl", skip_bad=skip_bad)
    return ParquetReader(path)


# --- writing ------------------------------------------------------------------------------------


class TableWriter(Protocol):
    """Appends rows to an output file; `close` finishes it."""

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value: Any) -> str:
    """A CSV cell: strings as they are, JSON values (numbers, lists, objects) as JSON, others as str."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, bool | int | float | list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)  # dates and times from Parquet read as they print


class CsvWriter:
    """Appends rows to a CSV/TSV file under a fixed header."""

    def __init__(self, path: Path, columns: Sequence[str], delimiter: str = ","):
        self.handle = path.open("w", encoding="utf-8", newline="")
        self.columns = list(columns)
        self.writer = csv.writer(self.handle, delimiter=delimiter)
        self.writer.writerow(self.columns)

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write rows; columns a row lacks stay empty."""
        self.writer.writerows([[_cell(row.get(c)) for c in self.columns] for row in rows])

    def close(self) -> None:
        """Flush and close the file."""
        self.handle.close()


class JsonlWriter:
    """Appends rows as JSON Lines, keeping each row's own keys."""

    def __init__(self, path: Path):
        self.handle = path.open("w", encoding="utf-8", newline="\n")

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write one JSON object per row."""
        self.handle.writelines(
            json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False, default=str) + "\n"
            for row in rows
        )

    def close(self) -> None:
        """Flush and close the file."""
        self.handle.close()


class ParquetWriter:
    """Appends row groups to a Parquet file with a fixed schema."""

    def __init__(self, path: Path, schema: Any):
        import pyarrow.parquet as pq

        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema)
        self.stringify = {f.name for f in schema if str(f.type) == "string"}

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write the rows as one row group."""
        import pyarrow as pa

        if not rows:
            return
        self.writer.write_table(pa.Table.from_pylist([self._fit(row) for row in rows], schema=self.schema))

    def _fit(self, row: Mapping[str, Any]) -> dict[str, Any]:
        # CSV/JSONL input columns are stored as strings: a JSONL number or object becomes its JSON.
        return {k: (_cell(v) if k in self.stringify and v is not None else v) for k, v in row.items()}

    def close(self) -> None:
        """Write the footer and close the file."""
        self.writer.close()


def parquet_schema(reader: ExportReader, added: Sequence[tuple[str, str]]) -> Any:
    """Input columns (their Parquet types, else strings) followed by the added columns."""
    import pyarrow as pa

    kinds = {"string": pa.string(), "float": pa.float64()}
    if isinstance(reader, ParquetReader):
        fields = list(reader.schema)
    else:
        fields = [pa.field(c, pa.string()) for c in reader.columns]
    return pa.schema([*fields, *[pa.field(name, kinds[kind]) for name, kind in added]])


def open_writer(fmt: str, path: Path, columns: Sequence[str], schema: Any = None) -> TableWriter:
    """A writer for the output format."""
    if fmt in ("csv", "tsv"):
        return CsvWriter(path, columns, delimiter=delimiter_of(fmt))
    if fmt == "jsonl":
        return JsonlWriter(path)
    return ParquetWriter(path, schema)
