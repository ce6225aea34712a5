"""Batch scoring of CMS exports (CSV, JSONL, Parquet) in bounded memory, for `raqib score`.

The export is read in chunks, each chunk is scored with one `ModerationModel.score` call and
written out before the next one is read, so memory depends on the chunk size and never on the
file size. Sorting by risk spills chunk-sorted runs to disk and k-way merges them.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import json
import math
import os
import pickle
import re
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from serving.schema import ACCEPTABLE_LABEL

FORMATS = ("csv", "tsv", "jsonl", "parquet")
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

# The canonical fields an export's columns can be mapped onto (CLI option → field in brackets):
# --text-col (text), --article-title-col, --article-text-col, --article-id-col, --id-col
# (comment_id), --site-col, --author-col. Only the first three reach the model.
MAPPED_FIELDS = ("text", "article_title", "article_text", "article_id", "comment_id", "site", "author")
MAPPINGS_DIR = Path("experiments/mappings")
MAPPING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

DEFAULT_CHUNK_SIZE = 5_000
MERGE_FAN_IN = 64  # open run files per merge pass; far below the usual 1024 file-descriptor limit
CSV_FIELD_LIMIT = 16 * 1024 * 1024  # article bodies can exceed csv's 128 KiB default
REASONS_SHOWN = 4


class ScoreInputError(ValueError):
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

    def as_record(self) -> dict[str, object]:
        """The error as one line of the `.errors.jsonl` side file."""
        return {self.unit: self.number, "field": self.field, "error": self.message}


class ColumnError(ValueError):
    """A mapped column that the export does not have, or an unusable mapping (exit code 2)."""


# --- column mapping -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMapping:
    """Which export column holds each canonical field; `explicit` fields must exist in the export."""

    columns: Mapping[str, str]
    explicit: frozenset[str] = frozenset()

    def column(self, name: str) -> str:
        """The export column of a canonical field."""
        return self.columns.get(name, name)

    def check(self, present: Sequence[str], path: str | Path) -> None:
        """Raise ColumnError if the text column or an explicitly mapped column is missing."""
        missing = [
            (name, self.column(name))
            for name in MAPPED_FIELDS
            if (name == "text" or name in self.explicit) and self.column(name) not in present
        ]
        if missing:
            named = ", ".join(f"'{column}' (for {name})" for name, column in missing)
            raise ColumnError(
                f"{path}: no column {named}; the columns present are: {', '.join(present) or '(none)'}"
            )


def mapping_path(name_or_path: str, directory: Path = MAPPINGS_DIR) -> Path:
    """A saved mapping's file: a .toml path as given, else `<directory>/<site>.toml`."""
    if name_or_path.endswith(".toml") or "/" in name_or_path or os.sep in name_or_path:
        return Path(name_or_path)
    if not MAPPING_NAME.match(name_or_path):
        raise ColumnError(f"mapping name {name_or_path!r} must be letters, digits, '_', '-' or '.'")
    return directory / f"{name_or_path}.toml"


def load_mapping(path: Path) -> dict[str, str]:
    """The `[columns]` table of a saved mapping, checked for unknown fields."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ColumnError(f"mapping file {path} not found (save one with --save-mapping)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ColumnError(f"unreadable mapping file {path}: {exc}") from None
    columns = data.get("columns")
    if not isinstance(columns, dict):
        raise ColumnError(f"{path}: expected a [columns] table")
    unknown = sorted(set(columns) - set(MAPPED_FIELDS))
    if unknown:
        raise ColumnError(
            f"{path}: unknown field(s) {', '.join(unknown)} (known: {', '.join(MAPPED_FIELDS)})"
        )
    if not all(isinstance(v, str) and v for v in columns.values()):
        raise ColumnError(f"{path}: every column name must be a non-empty string")
    return dict(columns)


def save_mapping(site: str, columns: Mapping[str, str], directory: Path = MAPPINGS_DIR) -> Path:
    """Write a site's column mapping (the fields named explicitly) as TOML and return its path."""
    path = mapping_path(site, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Column mapping for `raqib score --mapping {site}`: canonical field = column in the export.",
        "[columns]",
    ]
    # json.dumps yields a valid TOML basic string (same escapes), keeping Arabic readable.
    named = [name for name in MAPPED_FIELDS if name in columns]
    lines += [f"{name} = {json.dumps(columns[name], ensure_ascii=False)}" for name in named]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def resolve_mapping(options: Mapping[str, str | None], saved: Mapping[str, str] | None) -> ColumnMapping:
    """Command-line columns override a saved mapping, which overrides the canonical names."""
    columns = {name: name for name in MAPPED_FIELDS}
    explicit: set[str] = set()
    for source in (saved or {}, options):
        for name, column in source.items():
            if column:
                columns[name] = column
                explicit.add(name)
    return ColumnMapping(columns=columns, explicit=frozenset(explicit))


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSlice:
    """A stretch of a CSV/JSONL export that starts on a record boundary, to be read on its own."""

    start: int  # byte offset of its first record
    stop: int  # byte offset where the next slice starts
    lines_before: int  # lines of the file before `start`, so errors keep the whole file's line numbers


@dataclass
class Chunk:
    """Up to chunk-size readable rows as (line or row number, values), plus rows that failed."""

    rows: list[tuple[int, dict[str, Any]]]
    errors: list[ScoreInputError]
    done: int  # bytes read so far (CSV/JSONL) or rows read so far (Parquet)


def format_of(path: Path, override: str | None = None) -> str:
    """The export format from `--format` or the file suffix."""
    if override:
        if override not in FORMATS:
            raise ColumnError(f"unknown format {override!r} (use one of: {', '.join(FORMATS)})")
        return override
    found = SUFFIX_FORMATS.get(path.suffix.lower())
    if found is None:
        raise ColumnError(
            f"{path}: cannot tell the format from {path.suffix!r}; use .csv, .tsv, .jsonl or .parquet "
            "(or --format). A .json array cannot be streamed: convert it to JSONL."
        )
    return found


class _Lines:
    """A file's lines decoded strictly as UTF-8, counting lines and bytes as they are read.

    In skip mode a line that is not UTF-8 is recorded in `pending` and read with replacement
    characters, so the parser keeps going and the caller drops the row that held it.
    """

    def __init__(
        self, handle: IO[bytes], path: Path, skip_bad: bool, lines_before: int = 0, limit: int | None = None
    ):
        self.handle = handle
        self.path = path
        self.skip_bad = skip_bad
        self.number = lines_before
        self.limit = limit  # bytes to read from the handle's position; None reads to the end
        self.bytes_read = 0
        self.pending: list[ScoreInputError] = []

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:
            if self.limit is not None and self.bytes_read >= self.limit:
                return
            self.number += 1
            self.bytes_read += len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                error = ScoreInputError(
                    self.path, self.number, None, f"not valid UTF-8 (byte {exc.start}: {exc.reason})", "line"
                )
                if not self.skip_bad:
                    raise error from None
                self.pending.append(error)
                # Replacement characters keep the line's quotes and commas, so the parser stays
                # in step and only the record holding this line is dropped.
                line = raw.decode("utf-8", errors="replace")
            if self.number == 1:
                line = line.removeprefix("\ufeff")  # Excel writes a byte-order mark
            yield line

    def take_pending(self) -> list[ScoreInputError]:
        """The undecodable lines met since the last call."""
        pending, self.pending = self.pending, []
        return pending


def read_csv_header(path: Path, delimiter: str = ",") -> list[str]:
    """The header row of a CSV file; ScoreInputError if it is missing, not UTF-8 or has duplicates."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with path.open("rb") as handle:
        header = next(csv.reader(_Lines(handle, path, skip_bad=False), delimiter=delimiter), None)
    if not header:
        raise ScoreInputError(path, 1, None, "empty file: expected a header row", "line")
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise ScoreInputError(path, 1, None, f"duplicate column(s) in header: {duplicates}", "line")
    return header


def _open_lines(handle: IO[bytes], path: Path, skip_bad: bool, part: TextSlice | None) -> _Lines:
    if part is None:
        return _Lines(handle, path, skip_bad)
    handle.seek(part.start)
    return _Lines(handle, path, skip_bad, lines_before=part.lines_before, limit=part.stop - part.start)


def iter_csv(
    path: Path,
    delimiter: str,
    skip_bad: bool,
    errors: list[ScoreInputError],
    part: TextSlice | None = None,
) -> Iterator[tuple[int, dict[str, str], int]]:
    """(line the record starts on, values by header column, bytes read) per CSV record.

    A row with the wrong number of fields or a line that is not UTF-8 raises, or with `skip_bad`
    lands in `errors` and the row is skipped. Malformed quoting always raises. With `part`, only
    the records of that slice are read (bytes read then count from the slice's start).
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)
    header = read_csv_header(path, delimiter)
    width = len(header)
    with path.open("rb") as handle:
        lines = _open_lines(handle, path, skip_bad, part)
        reader = csv.reader(lines, delimiter=delimiter)
        if part is None:
            next(reader)
        previous_end = lines.number
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ScoreInputError(path, lines.number, None, f"malformed CSV: {exc}", "line") from None
            # A quoted field may span lines: report the line the record starts on.
            start, previous_end = previous_end + 1, lines.number
            bad_lines = lines.take_pending()
            if bad_lines:
                errors.extend(bad_lines)
                continue
            if not values:
                continue  # a blank line
            if len(values) != width:
                error = ScoreInputError(
                    path, start, None, f"{len(values)} fields where the header has {width}", "line"
                )
                if not skip_bad:
                    raise error
                errors.append(error)
                continue
            yield start, dict(zip(header, values, strict=True)), lines.bytes_read


def iter_jsonl(
    path: Path, skip_bad: bool, errors: list[ScoreInputError], part: TextSlice | None = None
) -> Iterator[tuple[int, dict[str, Any], int]]:
    """(line number, object, bytes read) per non-blank line; a bad line raises or lands in `errors`."""
    with path.open("rb") as handle:
        lines = _open_lines(handle, path, skip_bad, part)
        for line in lines:
            bad_lines = lines.take_pending()
            if bad_lines:
                errors.extend(bad_lines)
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                problem = None if isinstance(row, dict) else "each line must be a JSON object"
            except json.JSONDecodeError as exc:
                problem = f"invalid JSON: {exc.msg} (column {exc.colno})"
            if problem:
                error = ScoreInputError(path, lines.number, None, problem, "line")
                if not skip_bad:
                    raise error
                errors.append(error)
                continue
            yield lines.number, row, lines.bytes_read


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

    def rows(
        self, skip_bad: bool, errors: list[ScoreInputError]
    ) -> Iterator[tuple[int, dict[str, Any], int]]:
        """(number, values, progress) per readable row."""
        raise NotImplementedError  # pragma: no cover - every reader overrides it

    def chunks(self, chunk_size: int, skip_bad: bool) -> Iterator[Chunk]:
        """Chunks of at most chunk_size readable rows, with the rows that failed since the last one."""
        errors: list[ScoreInputError] = []
        return chunk_rows(self.rows(skip_bad, errors), errors, chunk_size, self.total)


def chunk_rows(
    rows: Iterable[tuple[int, dict[str, Any], int]],
    errors: list[ScoreInputError],
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


class CsvReader(ExportReader):
    """CSV/TSV via the csv module over strictly decoded lines, so errors keep their line number."""

    def __init__(self, path: Path, delimiter: str = ","):
        super().__init__(path)
        self.delimiter = delimiter
        self.columns = read_csv_header(path, delimiter)

    def rows(
        self, skip_bad: bool, errors: list[ScoreInputError]
    ) -> Iterator[tuple[int, dict[str, Any], int]]:
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

    def rows(
        self, skip_bad: bool, errors: list[ScoreInputError]
    ) -> Iterator[tuple[int, dict[str, Any], int]]:
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
            raise ScoreInputError(path, None, None, f"not a readable Parquet file: {exc}", "row") from None
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
        raise ScoreInputError(path, done + 1, None, f"unreadable Parquet data: {exc}", "row") from None


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
        # Skip mode: an undecodable line is the reading worker's to report, with its line number.
        lines = _Lines(handle, path, skip_bad=True)
        if fmt in ("csv", "tsv"):
            csv.field_size_limit(CSV_FIELD_LIMIT)
            read_csv_header(path, "\t" if fmt == "tsv" else ",")
            reader = csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",")
            next(reader)
            records: Iterator[bool] = (bool(values) for values in reader)
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
        return CsvReader(path, delimiter="\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        return JsonlReader(path, chunk_size, all_columns=output_format != "jsonl", skip_bad=skip_bad)
    return ParquetReader(path)


# --- writing ------------------------------------------------------------------------------------


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


def open_writer(fmt: str, path: Path, columns: Sequence[str], schema: Any = None) -> Any:
    """A writer for the output format."""
    if fmt in ("csv", "tsv"):
        return CsvWriter(path, columns, delimiter="\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        return JsonlWriter(path)
    return ParquetWriter(path, schema)


# --- scoring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputColumns:
    """Names of the columns `raqib score` adds (with an optional prefix)."""

    labels: tuple[str, ...]
    prefix: str = ""

    @property
    def label(self) -> str:
        return f"{self.prefix}label"

    def probability(self, label: str) -> str:
        """The column holding p(label)."""
        return f"{self.prefix}p_{label}"

    @property
    def action(self) -> str:
        return f"{self.prefix}action"

    @property
    def reasons(self) -> str:
        return f"{self.prefix}reasons"

    @property
    def model_version(self) -> str:
        return f"{self.prefix}model_version"

    def typed(self) -> list[tuple[str, str]]:
        """(name, kind) of every added column, in output order."""
        return [
            (self.label, "string"),
            *[(self.probability(label), "float") for label in self.labels],
            (self.action, "string"),
            (self.reasons, "string"),
            (self.model_version, "string"),
        ]

    def names(self) -> list[str]:
        """Every added column name, in output order."""
        return [name for name, _ in self.typed()]


def risk_of(scores: Mapping[str, float]) -> float:
    """How likely the comment is to be held: the highest probability of any non-acceptable label."""
    return max((p for label, p in scores.items() if label != ACCEPTABLE_LABEL), default=0.0)


def reasons_text(result: Any, explained: bool) -> str:
    """A short '; '-joined summary of why (or, without explanations, the deciding probability)."""
    if explained:
        return "; ".join(reason.detail for reason in result.reasons[:REASONS_SHOWN])
    if result.decided_label:
        return f"p({result.decided_label}) = {result.scores[result.decided_label]:.2f}"
    return ""


def _optional_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


@dataclass
class ScoreSummary:
    """What a scoring run did: counts by (action, label), bad rows, timing."""

    rows_in: int = 0
    rows_out: int = 0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0
    labels: tuple[str, ...] = ()

    @property
    def rows_per_second(self) -> float:
        return self.rows_out / self.seconds if self.seconds > 0 else 0.0


def score_chunk(
    model: Any,
    chunk: Chunk,
    mapping: ColumnMapping,
    out: OutputColumns,
    *,
    explain: bool,
    skip_bad: bool,
    path: Path,
    unit: str,
) -> tuple[list[dict[str, Any]], list[float], list[ScoreInputError]]:
    """Score one chunk with one model call; returns output rows, their risks and rows skipped."""
    from serving.model.moderation import CommentInput

    text_column = mapping.column("text")
    title_column = mapping.column("article_title")
    body_column = mapping.column("article_text")
    kept: list[dict[str, Any]] = []
    items: list[CommentInput] = []
    errors = list(chunk.errors)
    for number, row in chunk.rows:
        text = row.get(text_column)
        problem = None
        if text is None or text == "":
            problem = "missing or empty text"
        elif not isinstance(text, str):
            problem = f"expected a string, got {type(text).__name__}"
        elif not text.strip():
            problem = "empty text"
        if problem:
            error = ScoreInputError(path, number, text_column, problem, unit)
            if not skip_bad:
                raise error
            errors.append(error)
            continue
        kept.append(row)
        items.append(
            CommentInput(
                text=text,
                article_title=_optional_text(row.get(title_column)),
                article_text=_optional_text(row.get(body_column)),
            )
        )
    errors.sort(key=lambda error: error.number or 0)
    results = model.score(items, explain=explain)
    risks = []
    for row, result in zip(kept, results, strict=True):
        row[out.label] = result.label
        for label in out.labels:
            row[out.probability(label)] = result.scores.get(label, 0.0)
        row[out.action] = result.action
        row[out.reasons] = reasons_text(result, explain)
        row[out.model_version] = model.version
        risks.append(risk_of(result.scores))
    return kept, risks, errors


# --- external sort by risk ----------------------------------------------------------------------


def _write_run(directory: Path, index: int, entries: Iterable[tuple[float, int, dict[str, Any]]]) -> Path:
    path = directory / f"run-{index:06d}.pickle"
    with path.open("wb") as handle:
        for entry in entries:
            pickle.dump(entry, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _read_run(path: Path) -> Iterator[tuple[float, int, dict[str, Any]]]:
    # Our own spill files in a private temp dir: unpickling them trusts nothing external.
    with path.open("rb") as handle:
        while True:
            try:
                yield pickle.load(handle)
            except EOFError:
                return


class RiskSorter:
    """External sort, highest risk first: chunk-sorted runs on disk, then k-way `heapq.merge`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.runs: list[Path] = []
        self.sequence = 0
        self.spilled = 0

    def add(self, rows: Sequence[dict[str, Any]], risks: Sequence[float]) -> None:
        """Sort one chunk in memory and spill it as a run."""
        # (-risk, input order) sorts riskiest first and keeps input order among equal risks.
        entries = [
            (-risk, self.sequence + i, row) for i, (row, risk) in enumerate(zip(rows, risks, strict=True))
        ]
        self.sequence += len(entries)
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        self.runs.append(_write_run(self.directory, self.spilled, entries))
        self.spilled += 1

    def merged(self) -> Iterator[dict[str, Any]]:
        """All rows, riskiest first, holding one row per open run in memory."""
        runs = list(self.runs)
        # Merge in passes so that no more than MERGE_FAN_IN run files are open at once.
        while len(runs) > MERGE_FAN_IN:
            merged_runs = []
            for start in range(0, len(runs), MERGE_FAN_IN):
                group = runs[start : start + MERGE_FAN_IN]
                streams = [_read_run(p) for p in group]
                merged_runs.append(
                    _write_run(self.directory, self.spilled, heapq.merge(*streams, key=_sort_key))
                )
                self.spilled += 1
                for p in group:
                    p.unlink()
            runs = merged_runs
        for _, _, row in heapq.merge(*[_read_run(p) for p in runs], key=_sort_key):
            yield row


def _sort_key(entry: tuple[float, int, dict[str, Any]]) -> tuple[float, int]:
    return entry[0], entry[1]


# --- the whole run ------------------------------------------------------------------------------


@dataclass
class ScoreJob:
    """Everything `raqib score` needs besides the model."""

    input: Path
    output: Path
    input_format: str
    output_format: str
    mapping: ColumnMapping
    chunk_size: int = DEFAULT_CHUNK_SIZE
    explain: bool = True
    sort_risk: bool = False
    skip_bad: bool = False
    prefix: str = ""

    @property
    def errors_path(self) -> Path:
        """Where skipped rows are recorded with --skip-bad-rows."""
        return self.output.with_name(self.output.name + ".errors.jsonl")


ProgressHook = Callable[[str, int, int, int], None]  # phase, done, total, rows so far


def default_output(path: Path, fmt: str) -> Path:
    """`<stem>.scored.<suffix>` beside the input."""
    suffix = path.suffix if SUFFIX_FORMATS.get(path.suffix.lower()) == fmt else f".{fmt}"
    return path.with_name(f"{path.stem}.scored{suffix}")


@dataclass
class OutputPlan:
    """The opened export and what the output will hold: added columns, all columns, Parquet schema."""

    reader: ExportReader
    out: OutputColumns
    columns: list[str]
    schema: Any


def plan_output(job: ScoreJob, labels: Sequence[str]) -> OutputPlan:
    """Open the export and check its columns against the mapping and the columns to be added."""
    if job.output.resolve() == job.input.resolve():
        raise ColumnError(f"{job.output}: refusing to overwrite the input")
    reader = open_reader(job.input, job.input_format, job.chunk_size, job.output_format, job.skip_bad)
    job.mapping.check(reader.columns, job.input)
    out = OutputColumns(labels=tuple(labels), prefix=job.prefix)
    clashes = [c for c in out.names() if c in reader.columns]
    if clashes:
        raise ColumnError(
            f"{job.input}: already has column(s) {', '.join(clashes)}; pass --prefix (e.g. --prefix raqib_) "
            "to name the added columns differently"
        )
    schema = parquet_schema(reader, out.typed()) if job.output_format == "parquet" else None
    return OutputPlan(reader, out, [*reader.columns, *out.names()], schema)


def error_records(
    errors: Sequence[ScoreInputError], chunk: Chunk, mapping: ColumnMapping
) -> list[dict[str, Any]]:
    """The `.errors.jsonl` entries of a chunk's skipped rows, with the comment id where it was readable."""
    comment_id_column = mapping.column("comment_id")
    ids = {n: r.get(comment_id_column) for n, r in chunk.rows}
    return [error.as_record() | {"comment_id": ids.get(error.number)} for error in errors]


def run_score(job: ScoreJob, model: Any, progress: ProgressHook | None = None) -> ScoreSummary:
    """Stream the export through the model into the output; raise ScoreInputError/ColumnError."""
    started = time.perf_counter()
    report = progress or (lambda *_: None)
    report("reading columns", 0, 0, 0)
    plan = plan_output(job, model.labels)
    reader, out, columns, schema = plan.reader, plan.out, plan.columns, plan.schema
    summary = ScoreSummary(labels=out.labels)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename at the end, so a failed run leaves no half-written output;
    # the sort's spill files go there too (the output's disk has room for the data; /tmp may be RAM).
    staging = Path(tempfile.mkdtemp(prefix=f".{job.output.name}.", dir=job.output.parent))
    errors_handle = None
    writer = None
    try:
        if job.skip_bad:
            errors_handle = (staging / "errors.jsonl").open("w", encoding="utf-8")
        partial = staging / f"output.{job.output_format}"
        writer = None if job.sort_risk else open_writer(job.output_format, partial, columns, schema)
        sorter = RiskSorter(staging) if job.sort_risk else None
        total = reader.total
        for chunk in reader.chunks(job.chunk_size, job.skip_bad):
            summary.rows_in += len(chunk.rows) + len(chunk.errors)
            rows, risks, errors = score_chunk(
                model,
                chunk,
                job.mapping,
                out,
                explain=job.explain,
                skip_bad=job.skip_bad,
                path=job.input,
                unit=reader.unit,
            )
            summary.errors += len(errors)
            if errors_handle is not None:
                for record in error_records(errors, chunk, job.mapping):
                    errors_handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            for row in rows:
                summary.counts[(row[out.action], row[out.label])] += 1
            summary.rows_out += len(rows)
            if sorter is not None:
                sorter.add(rows, risks)
            else:
                writer.write(rows)
            report("scoring", chunk.done, total, summary.rows_out)
        if sorter is not None:
            writer = open_writer(job.output_format, partial, columns, schema)
            batch: list[dict[str, Any]] = []
            written = 0
            for row in sorter.merged():
                batch.append(row)
                if len(batch) >= job.chunk_size:
                    writer.write(batch)
                    written += len(batch)
                    report("sorting", written, summary.rows_out, summary.rows_out)
                    batch = []
            writer.write(batch)
            report("sorting", summary.rows_out, summary.rows_out, summary.rows_out)
        writer.close()
        writer = None
        if errors_handle is not None:
            errors_handle.close()
            os.replace(staging / "errors.jsonl", job.errors_path)
        os.replace(partial, job.output)
    finally:
        if errors_handle is not None and not errors_handle.closed:
            errors_handle.close()
        if writer is not None:
            _close_quietly(writer)
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    summary.seconds = time.perf_counter() - started
    return summary


def _close_quietly(writer: Any) -> None:
    # Only reached when the run already failed: that error is the one worth reporting.
    with contextlib.suppress(Exception):
        writer.close()


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name and alias:
            return name, alias, None
    elif "/" in rest:
        name, _, version = rest.partition("/")
        if name and version:
            return name, None, version
    raise ColumnError(f"model URI {uri!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")


@contextlib.contextmanager
def resolved_bundle(spec: str, root: Path = Path(".")) -> Iterator[Path]:
    """The bundle directory of `spec`: as given, or a registry version exported to a temp directory."""
    if not spec.startswith("models:/"):
        yield Path(spec)
        return
    name, alias, version = parse_model_uri(spec)
    # export_bundle points mlflow at serving.model.bundle.default_tracking_uri() and writes the run's
    # bundle metadata (labels, thresholds, version) beside the pickle, as `raqib export` does.
    from training.registry.tracking import export_bundle

    with tempfile.TemporaryDirectory(prefix="raqib-model-") as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(name, bundle, alias=alias, version=version, root=root)
        yield bundle


def load_model(spec: str, root: Path = Path(".")) -> Any:
    """A ModerationModel from a bundle directory or a registry URI (resolved through a temp bundle)."""
    from serving.model.moderation import ModerationModel

    with resolved_bundle(spec, root) as bundle:
        return ModerationModel.from_bundle(bundle)
