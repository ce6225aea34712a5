"""What every label importer shares: locations and problems, reading the input, choices and votes.

Each tool's module (labelstudio, argilla, doccano, csv_export, feedback) turns its export into a
`Parsed`: candidate rows in canonical column names, with the rows it could not use as `Problem`s
that name the file and line (or task/record). `training.labels.importers` maps, validates,
de-duplicates and writes the candidates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.tables import TableError, json_document
from training.data.contract import OPTIONAL_COLUMNS
from training.data.labeled import parse_time
from training.data.tables import TableInputError, delimiter_of, iter_csv, iter_jsonl


class ImportInputError(ValueError):
    """The input as a whole cannot be read (not JSON, no header, unreadable): nothing is imported."""


class ImportUsageError(ValueError):
    """Options that do not fit the input (missing column, ambiguous choice field, bad --map)."""


# --- locations and problems ---------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """Where a row sits: a line of a JSONL/CSV file, or the n-th task/record of a JSON array."""

    path: str
    number: int
    unit: str = "line"  # "line", "task" (Label Studio JSON) or "record" (other JSON arrays)

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.number}" if self.unit == "line" else f"{self.path}: {self.unit} {self.number}"
        )


@dataclass(frozen=True)
class Problem:
    """A row that cannot be imported, located in its file."""

    where: Location
    field: str | None
    message: str

    def __str__(self) -> str:
        what = f" field '{self.field}'" if self.field else ""
        return f"{self.where}:{what} {self.message}"

    @classmethod
    def of(cls, error: TableInputError) -> Problem:
        """A row the table reader could not parse."""
        return cls(Location(error.path, error.number or 0), error.field, error.message)


@dataclass
class Candidate:
    """A parsed row before label mapping and validation; `raw` uses canonical column names."""

    where: Location
    raw: dict[str, Any]
    decided_at: datetime | None = None  # when the moderator decided, if the export says


@dataclass
class Parsed:
    """What a format parser found in the input."""

    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unlabelled: list[Location] = field(default_factory=list)
    annotation_conflicts: list[str] = field(default_factory=list)
    read: int = 0

    def take_unreadable(self, errors: list[TableInputError]) -> None:
        """Lines the reader could not parse: each one is a row read and a problem."""
        self.read += len(errors)
        self.problems.extend(Problem.of(e) for e in errors)
        errors.clear()


@dataclass(frozen=True)
class ImportOptions:
    """Format-specific knobs of `raqib import`."""

    text_field: str = "text"
    choice_field: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)  # csv: canonical field → column
    explicit_columns: frozenset[str] = frozenset()  # csv: columns the user named (must exist)
    decided_column: str | None = None  # csv: when the moderator decided


def time_field(raw: Mapping[str, Any], names: Sequence[str]) -> tuple[datetime | None, str | None]:
    """The first of `names` holding a time, or (None, problem) when it is unreadable."""
    for name in names:
        if raw.get(name) not in (None, ""):
            try:
                return parse_time(raw[name]), None
            except ValueError:
                return None, f"{name}: not an ISO-8601 time ({raw[name]!r})"
    return None, None


# --- reading the input --------------------------------------------------------------------------


def read_json_document(path: Path) -> Any:
    """A whole JSON file (Label Studio and Argilla export arrays), strictly UTF-8."""
    try:
        return json_document(path.read_bytes())
    except TableError as exc:
        raise ImportInputError(f"{path}:{exc.line}: {exc.message}") from None


def objects(path: Path, parsed: Parsed, unit: str) -> Iterator[tuple[Location, Any]]:
    """(location, object) from a JSONL file (by line) or a JSON array (by task/record index)."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        errors: list[TableInputError] = []
        for number, row, _ in iter_jsonl(path, skip_bad=True, errors=errors):
            parsed.take_unreadable(errors)
            yield Location(str(path), number), row
        parsed.take_unreadable(errors)
        return
    document = read_json_document(path)
    if not isinstance(document, list):
        raise ImportInputError(f"{path}: expected a JSON array of {unit}s (or a .jsonl file)")
    for index, item in enumerate(document, start=1):
        yield Location(str(path), index, unit), item


def csv_records(path: Path, parsed: Parsed) -> Iterator[tuple[Location, dict[str, str]]]:
    """(location, row) per CSV/TSV record; broken lines become problems."""
    errors: list[TableInputError] = []
    try:
        for number, row, _ in iter_csv(path, delimiter_of(path.suffix), skip_bad=True, errors=errors):
            parsed.take_unreadable(errors)
            yield Location(str(path), number), row
    except TableInputError as exc:  # a missing header or broken quoting: the file as a whole
        raise ImportInputError(str(exc)) from None
    parsed.take_unreadable(errors)


# --- choices, votes and the text ----------------------------------------------------------------


def single_choice(value: Any) -> tuple[str | None, str | None]:
    """(label, problem) from a choice value: "spam", ["spam"], {"choices": ["spam"]} or JSON text."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):  # CSV exports carry multi-choice values as JSON
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                return stripped, None
        else:
            return stripped or None, None
    if isinstance(value, dict):
        value = value.get("choices", value.get("labels"))
    if value is None:
        return None, None
    if isinstance(value, list):
        if not value:
            return None, None
        if len(value) > 1:
            return None, f"several labels {value} (Raqib needs exactly one label per comment)"
        value = value[0]
    if isinstance(value, str):
        return value.strip() or None, None
    return None, f"expected a label name, got {type(value).__name__}"


def canonical_extras(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Canonical optional columns (article_id, site …) found in the given dicts, first one wins."""
    extras: dict[str, Any] = {}
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        for column in OPTIONAL_COLUMNS:
            if column not in extras and source.get(column) not in (None, ""):
                extras[column] = source[column]
    return extras


@dataclass
class Vote:
    """One annotator's answer, with when they gave it."""

    label: str
    decided_at: datetime | None
    order: int
    who: str


def latest(votes: list[Vote]) -> Vote:
    """The latest decision; untimed ones count as oldest, list order breaks ties."""
    floor = datetime.min.replace(tzinfo=UTC)
    return max(votes, key=lambda v: (v.decided_at or floor, v.order))


def disagreement(where: Location, votes: list[Vote], chosen: Vote) -> str | None:
    """A report line when the annotators did not all give the same label."""
    if len({v.label for v in votes}) < 2:
        return None
    listed = ", ".join(
        f"{v.label} by {v.who or '?'}" + (f" at {v.decided_at.isoformat()}" if v.decided_at else "")
        for v in votes
    )
    return f"{where}: annotators disagree ({listed}); took {chosen.label!r}, the latest"


def add_voted(parsed: Parsed, where: Location, votes: list[Vote]) -> Vote | None:
    """The winning vote of a row (noting any disagreement), or None when nobody labelled it."""
    if not votes:
        parsed.unlabelled.append(where)
        return None
    chosen = latest(votes)
    conflict = disagreement(where, votes, chosen)
    if conflict:
        parsed.annotation_conflicts.append(conflict)
    return chosen


def require_text(
    where: Location,
    container: Mapping[str, Any],
    text_field: str,
    parsed: Parsed,
    raw: dict[str, Any],
    decided_at: datetime | None,
    prefix: str = "",
) -> None:
    """Add the candidate, or a problem naming the text field when the export lacks it."""
    if text_field not in container:
        present = ", ".join(container) or "(none)"
        parsed.problems.append(
            Problem(where, prefix + text_field, f"missing (present: {present}); set --text-field")
        )
        return
    parsed.candidates.append(Candidate(where, raw, decided_at))
