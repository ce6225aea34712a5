"""Batch scoring of CMS exports (CSV, JSONL, Parquet) in bounded memory, for `raqib score`.

The export is read in chunks, each chunk is scored with one `ModerationModel.score` call and
written out before the next one is read, so memory depends on the chunk size and never on the
file size. Sorting by risk spills chunk-sorted runs to disk and k-way merges them.

This module maps the export's columns, scores chunks and sorts by risk; reading and writing the
files is `training.data.tables`, and a `models:/` URI is resolved by `training.registry.export`.
"""

from __future__ import annotations

import contextlib
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

from serving.schema import risk_of
from training.data.tables import (
    FORMATS,
    SUFFIX_FORMATS,
    Chunk,
    ExportReader,
    TableInputError,
    TableWriter,
    open_reader,
    open_writer,
    parquet_schema,
)

# The canonical fields an export's columns can be mapped onto (CLI option → field in brackets):
# --text-col (text), --article-title-col, --article-text-col, --article-id-col, --id-col
# (comment_id), --site-col, --author-col. Only the first three reach the model.
MAPPED_FIELDS = ("text", "article_title", "article_text", "article_id", "comment_id", "site", "author")
MAPPINGS_DIR = Path("experiments/mappings")
MAPPING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

DEFAULT_CHUNK_SIZE = 5_000
MERGE_FAN_IN = 64  # open run files per merge pass; far below the usual 1024 file-descriptor limit
REASONS_SHOWN = 4


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


def reasons_text(result: Any, explained: bool) -> str:
    """A short '; '-joined summary of why (or, without explanations, the deciding probability)."""
    if explained:
        return "; ".join(reason.detail for reason in result.reasons[:REASONS_SHOWN])
    if result.decided_label:
        return f"p({result.decided_label}) = {result.scores[result.decided_label]:.2f}"
    return ""


def _text_problem(text: object) -> str:
    """Why a comment text cannot be scored."""
    if text is None or text == "":
        return "missing or empty text"
    if not isinstance(text, str):
        return f"expected a string, got {type(text).__name__}"
    return "empty text"


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
) -> tuple[list[dict[str, Any]], list[float], list[TableInputError]]:
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
        if not isinstance(text, str) or not text.strip():
            error = TableInputError(path, number, text_column, _text_problem(text), unit)
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
    errors: Sequence[TableInputError], chunk: Chunk, mapping: ColumnMapping
) -> list[dict[str, Any]]:
    """The `.errors.jsonl` entries of a chunk's skipped rows, with the comment id where it was readable."""
    comment_id_column = mapping.column("comment_id")
    ids: dict[int | None, Any] = {n: r.get(comment_id_column) for n, r in chunk.rows}
    return [error.as_record() | {"comment_id": ids.get(error.number)} for error in errors]


def run_score(job: ScoreJob, model: Any, progress: ProgressHook | None = None) -> ScoreSummary:
    """Stream the export through the model into the output; raise TableInputError/ColumnError."""
    started = time.perf_counter()
    report = progress or _no_progress
    report("reading columns", 0, 0, 0)
    plan = plan_output(job, model.labels)
    summary = ScoreSummary(labels=plan.out.labels)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename at the end, so a failed run leaves no half-written output;
    # the sort's spill files go there too (the output's disk has room for the data; /tmp may be RAM).
    staging = Path(tempfile.mkdtemp(prefix=f".{job.output.name}.", dir=job.output.parent))
    try:
        _score_into(staging, job, model, plan, summary, report)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    summary.seconds = time.perf_counter() - started
    return summary


def _no_progress(phase: str, done: int, total: int, rows: int) -> None:
    return None


RowSink = Callable[[list[dict[str, Any]], list[float]], None]  # scored rows and their risks


def _score_into(
    staging: Path, job: ScoreJob, model: Any, plan: OutputPlan, summary: ScoreSummary, report: ProgressHook
) -> None:
    """Score the export into files under `staging` (sorted by risk if asked), then move them into place."""
    partial = staging / f"output.{job.output_format}"
    skipped_rows = staging / "errors.jsonl"
    writer: TableWriter | None = None
    with contextlib.ExitStack() as files:
        errors_out = files.enter_context(skipped_rows.open("w", encoding="utf-8")) if job.skip_bad else None
        try:
            if job.sort_risk:
                sorter = RiskSorter(staging)
                _score_chunks(job, model, plan, summary, report, errors_out, sorter.add)
                writer = open_writer(job.output_format, partial, plan.columns, plan.schema)
                _write_sorted(sorter.merged(), writer, job.chunk_size, summary.rows_out, report)
            else:
                writer = in_order = open_writer(job.output_format, partial, plan.columns, plan.schema)

                def write_in_order(rows: list[dict[str, Any]], risks: list[float]) -> None:
                    in_order.write(rows)

                _score_chunks(job, model, plan, summary, report, errors_out, write_in_order)
            finished, writer = writer, None
            finished.close()
        finally:
            if writer is not None:
                _close_quietly(writer)
    if job.skip_bad:
        os.replace(skipped_rows, job.errors_path)
    os.replace(partial, job.output)


def _score_chunks(
    job: ScoreJob,
    model: Any,
    plan: OutputPlan,
    summary: ScoreSummary,
    report: ProgressHook,
    errors_out: IO[str] | None,
    sink: RowSink,
) -> None:
    """Score the export chunk by chunk: count the outcomes, record skipped rows, hand the rows on."""
    total = plan.reader.total
    for chunk in plan.reader.chunks(job.chunk_size, job.skip_bad):
        summary.rows_in += len(chunk.rows) + len(chunk.errors)
        rows, risks, errors = score_chunk(
            model,
            chunk,
            job.mapping,
            plan.out,
            explain=job.explain,
            skip_bad=job.skip_bad,
            path=job.input,
            unit=plan.reader.unit,
        )
        summary.errors += len(errors)
        if errors_out is not None:
            for record in error_records(errors, chunk, job.mapping):
                errors_out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        for row in rows:
            summary.counts[(row[plan.out.action], row[plan.out.label])] += 1
        summary.rows_out += len(rows)
        sink(rows, risks)
        report("scoring", chunk.done, total, summary.rows_out)


def _write_sorted(
    rows: Iterator[dict[str, Any]], writer: TableWriter, chunk_size: int, total: int, report: ProgressHook
) -> None:
    """Write the merged runs in chunk-size batches, so the sort never holds more than one batch."""
    batch: list[dict[str, Any]] = []
    written = 0
    for row in rows:
        batch.append(row)
        if len(batch) >= chunk_size:
            writer.write(batch)
            written += len(batch)
            report("sorting", written, total, total)
            batch = []
    writer.write(batch)
    report("sorting", total, total, total)


def _close_quietly(writer: TableWriter) -> None:
    # Only reached when the run already failed: that error is the one worth reporting.
    with contextlib.suppress(Exception):
        writer.close()


def load_model(spec: str, root: Path = Path(".")) -> Any:
    """A ModerationModel from a bundle directory or a registry URI (resolved through a temp bundle)."""
    from serving.model.moderation import ModerationModel
    from training.registry.export import resolved_bundle

    with resolved_bundle(spec, root) as bundle:
        return ModerationModel.from_bundle(bundle)
