"""Import labelled exports (Label Studio, Argilla, doccano, CSV, feedback) as canonical JSONL.

Every import appends a new file to data/labeled/ and never rewrites an old one. The same comment
(normalised text + article id) appearing again is a duplicate when the label agrees and a conflict
when it does not; a conflict goes to the latest moderator decision (see `later_decision_wins`).
`resolved_labeled_records` applies the same rule when the directory is read for training.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from serving.schema import DEFAULT_LABELS
from serving.text.normalize import normalize
from training.batch.scoring import ScoreInputError, iter_csv, iter_jsonl, read_csv_header
from training.data.contract import (
    OPTIONAL_COLUMNS,
    ContractError,
    LabeledRecord,
    iter_raw_rows,
    validate_record,
    write_jsonl,
)

FORMATS = ("labelstudio", "argilla", "doccano", "csv", "feedback")
DEFAULT_OUT_DIR = Path("data/labeled")
META_SUFFIX = ".meta.json"
# Label Studio's own columns in JSON_MIN/CSV exports; whatever else is not data is the choice.
LABEL_STUDIO_META = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"})
# Columns `raqib import csv` reads: canonical field → default column name.
CSV_FIELDS = (
    "text",
    "label",
    "comment_id",
    "article_id",
    "article_title",
    "article_text",
    "author",
    "site",
    "source",
    "created_at",
)
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
STAMPED_NAME = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-")
MAP_ITEM = re.compile(r"^\s*([^=]+?)\s*=\s*([a-z][a-z0-9_]*)\s*$")


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


@dataclass(frozen=True)
class ImportOptions:
    """Format-specific knobs of `raqib import`."""

    text_field: str = "text"
    choice_field: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)  # csv: canonical field → column
    explicit_columns: frozenset[str] = frozenset()  # csv: columns the user named (must exist)
    decided_column: str | None = None  # csv: when the moderator decided


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time (naive times are taken as UTC); None when empty; ValueError when unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _time_field(raw: Mapping[str, Any], names: Sequence[str]) -> tuple[datetime | None, str | None]:
    """The first of `names` holding a time, or (None, problem) when it is unreadable."""
    for name in names:
        if raw.get(name) not in (None, ""):
            try:
                return parse_time(raw[name]), None
            except ValueError:
                return None, f"{name}: not an ISO-8601 time ({raw[name]!r})"
    return None, None


def _located(error: ScoreInputError) -> Problem:
    return Problem(Location(error.path, error.number or 0), error.field, error.message)


# --- reading the input --------------------------------------------------------------------------


def _json_document(path: Path) -> Any:
    """A whole JSON file (Label Studio and Argilla export arrays), strictly UTF-8."""
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ImportInputError(f"{path}:{line}: not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportInputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None


def _objects(path: Path, parsed: Parsed, unit: str) -> Iterator[tuple[Location, Any]]:
    """(location, object) from a JSONL file (by line) or a JSON array (by task/record index)."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        errors: list[ScoreInputError] = []
        for number, row, _ in iter_jsonl(path, skip_bad=True, errors=errors):
            _take(errors, parsed)
            yield Location(str(path), number), row
        _take(errors, parsed)
        return
    document = _json_document(path)
    if not isinstance(document, list):
        raise ImportInputError(f"{path}: expected a JSON array of {unit}s (or a .jsonl file)")
    for index, item in enumerate(document, start=1):
        yield Location(str(path), index, unit), item


def _csv_rows(path: Path, parsed: Parsed) -> Iterator[tuple[Location, dict[str, str]]]:
    """(location, row) per CSV/TSV record; broken lines become problems."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    errors: list[ScoreInputError] = []
    try:
        for number, row, _ in iter_csv(path, delimiter, skip_bad=True, errors=errors):
            _take(errors, parsed)
            yield Location(str(path), number), row
    except ScoreInputError as exc:  # a missing header or broken quoting: the file as a whole
        raise ImportInputError(str(exc)) from None
    _take(errors, parsed)


def _take(errors: list[ScoreInputError], parsed: Parsed) -> None:
    """Lines the reader could not parse: each one is a row read and a problem."""
    parsed.read += len(errors)
    parsed.problems.extend(_located(e) for e in errors)
    errors.clear()


def _single_choice(value: Any) -> tuple[str | None, str | None]:
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


def _canonical_extras(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
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
class _Vote:
    label: str
    decided_at: datetime | None
    order: int
    who: str


def _latest(votes: list[_Vote]) -> _Vote:
    """The latest decision; untimed ones count as oldest, list order breaks ties."""
    floor = datetime.min.replace(tzinfo=UTC)
    return max(votes, key=lambda v: (v.decided_at or floor, v.order))


def _disagreement(where: Location, votes: list[_Vote], chosen: _Vote) -> str | None:
    if len({v.label for v in votes}) < 2:
        return None
    listed = ", ".join(
        f"{v.label} by {v.who or '?'}" + (f" at {v.decided_at.isoformat()}" if v.decided_at else "")
        for v in votes
    )
    return f"{where}: annotators disagree ({listed}); took {chosen.label!r}, the latest"


# --- Label Studio -------------------------------------------------------------------------------


def parse_labelstudio(path: Path, options: ImportOptions) -> Parsed:
    """Label Studio JSON (tasks with annotations), JSON_MIN or CSV exports of a choices project."""
    parsed = Parsed()
    if path.suffix.lower() in (".csv", ".tsv"):
        header = read_csv_header(path, "\t" if path.suffix.lower() == ".tsv" else ",")
        choice = _choice_column(header, options, path)
        return _parse_flat_annotations(_csv_rows(path, parsed), parsed, options, choice)
    document = _json_document(path)
    if not isinstance(document, list):
        raise ImportInputError(
            f"{path}: expected a JSON array of tasks (Label Studio JSON or JSON_MIN export)"
        )
    full = any(
        isinstance(t, dict) and ("annotations" in t or "completions" in t or "data" in t) for t in document
    )
    located = [(Location(str(path), i, "task"), t) for i, t in enumerate(document, start=1)]
    if not full:
        keys = list(dict.fromkeys(k for _, t in located if isinstance(t, dict) for k in t))
        choice = _choice_column(keys, options, path)
        return _parse_flat_annotations(iter(located), parsed, options, choice)
    for where, task in located:
        parsed.read += 1
        _labelstudio_task(where, task, options, parsed)
    return parsed


def _choice_column(columns: Sequence[str], options: ImportOptions, path: Path) -> str:
    """The JSON_MIN/CSV column holding the choice: --choice-field, else the one non-data column."""
    if options.choice_field:
        if options.choice_field not in columns:
            raise ImportUsageError(
                f"{path}: no column '{options.choice_field}' (--choice-field); present: {', '.join(columns)}"
            )
        return options.choice_field
    others = [
        c
        for c in columns
        if c not in LABEL_STUDIO_META and c != options.text_field and c not in OPTIONAL_COLUMNS
    ]
    if len(others) == 1:
        return others[0]
    if not others:
        raise ImportUsageError(
            f"{path}: no choice column found among {', '.join(columns)}; use --choice-field"
        )
    raise ImportUsageError(
        f"{path}: several columns could hold the choice ({', '.join(others)}); pick one with --choice-field"
    )


def _parse_flat_annotations(
    rows: Iterator[tuple[Location, Any]], parsed: Parsed, options: ImportOptions, choice: str
) -> Parsed:
    """JSON_MIN/CSV: one row per annotation; rows sharing a task `id` are one comment."""
    tasks: dict[str, tuple[Location, dict[str, Any], list[_Vote]]] = {}
    broken: set[str] = set()  # a task with one bad annotation row is reported, not half-imported
    for order, (where, row) in enumerate(rows):
        if not isinstance(row, dict):
            parsed.read += 1
            parsed.problems.append(Problem(where, None, "expected an object"))
            continue
        task_id = row.get("id")
        key = f"id:{task_id}" if task_id not in (None, "") else f"at:{where}"
        if key in broken:
            continue
        if key not in tasks:
            parsed.read += 1
            tasks[key] = (where, row, [])
        label, problem = _single_choice(row.get(choice))
        decided_at, time_problem = _time_field(row, ("updated_at", "created_at"))
        if problem or time_problem:
            parsed.problems.append(
                Problem(where, choice if problem else "updated_at", problem or time_problem or "")
            )
            tasks.pop(key, None)
            broken.add(key)
            continue
        if label is not None:
            tasks[key][2].append(_Vote(label, decided_at, order, str(row.get("annotator") or "")))
    for where, row, votes in tasks.values():
        if not votes:
            parsed.unlabelled.append(where)
            continue
        chosen = _latest(votes)
        conflict = _disagreement(where, votes, chosen)
        if conflict:
            parsed.annotation_conflicts.append(conflict)
        raw = {
            "text": row.get(options.text_field),
            "label": chosen.label,
            # JSON_MIN's created_at/updated_at are the annotation's times, not the comment's.
            **{k: v for k, v in _canonical_extras(row).items() if k != "created_at"},
        }
        _require_text(where, row, options.text_field, parsed, raw, chosen.decided_at)
    return parsed


def _require_text(
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


def _labelstudio_task(where: Location, task: Any, options: ImportOptions, parsed: Parsed) -> None:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        parsed.problems.append(Problem(where, "data", "expected a task object with a 'data' object"))
        return
    data = task["data"]
    votes: list[_Vote] = []
    annotations = task.get("annotations", task.get("completions")) or []
    for order, annotation in enumerate(annotations):
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        label, problem = _annotation_choice(annotation.get("result") or [], options.choice_field)
        decided_at, time_problem = _time_field(annotation, ("updated_at", "created_at"))
        if problem or time_problem:
            parsed.problems.append(Problem(where, "annotations", problem or time_problem or ""))
            return
        if label is not None:
            who = annotation.get("completed_by")
            if isinstance(who, dict):
                who = who.get("email") or who.get("id")
            votes.append(_Vote(label, decided_at, order, str(who or "")))
    if not votes:
        parsed.unlabelled.append(where)
        return
    chosen = _latest(votes)
    conflict = _disagreement(where, votes, chosen)
    if conflict:
        parsed.annotation_conflicts.append(conflict)
    raw = {"text": data.get(options.text_field), "label": chosen.label, **_canonical_extras(data)}
    _require_text(where, data, options.text_field, parsed, raw, chosen.decided_at, prefix="data.")


def _annotation_choice(results: Any, choice_field: str | None) -> tuple[str | None, str | None]:
    """The single choice of one annotation's `result` list, or a problem."""
    if not isinstance(results, list):
        return None, "'result' is not a list"
    found: dict[str, Any] = {}
    for item in results:
        if not isinstance(item, dict):
            continue
        value = item.get("value")
        if not isinstance(value, dict) or "choices" not in value:
            continue
        name = str(item.get("from_name") or "")
        if choice_field is None or name == choice_field:
            found[name] = value["choices"]
    if len(found) > 1:
        return None, f"several choice questions ({', '.join(found)}); pick one with --choice-field"
    if not found:
        return None, None
    return _single_choice(next(iter(found.values())))


# --- Argilla ------------------------------------------------------------------------------------


def parse_argilla(path: Path, options: ImportOptions) -> Parsed:
    """Argilla records: flat `text`+`label`, 1.x `annotation`, 2.x `responses` (see the docs)."""
    parsed = Parsed()
    question = options.choice_field or "label"
    for where, record in _objects(path, parsed, "record"):
        parsed.read += 1
        if not isinstance(record, dict):
            parsed.problems.append(Problem(where, None, "expected an object"))
            continue
        fields = record.get("fields") if isinstance(record.get("fields"), dict) else None
        inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else None
        container = record if options.text_field in record else fields or inputs or record
        votes, problem = _argilla_votes(record, question)
        if problem:
            parsed.problems.append(Problem(where, question, problem))
            continue
        if not votes or str(record.get("status", "")).lower() == "discarded":
            parsed.unlabelled.append(where)
            continue
        chosen = _latest(votes)
        conflict = _disagreement(where, votes, chosen)
        if conflict:
            parsed.annotation_conflicts.append(conflict)
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else None
        raw = {
            "text": container.get(options.text_field),
            "label": chosen.label,
            **_canonical_extras(record, metadata),
        }
        prefix = "fields." if container is fields else "inputs." if container is inputs else ""
        _require_text(where, container, options.text_field, parsed, raw, chosen.decided_at, prefix)
    return parsed


def _argilla_votes(record: dict[str, Any], question: str) -> tuple[list[_Vote], str | None]:
    """Submitted answers to `question`, from whichever Argilla shape the record has."""
    responses = record.get("responses")
    if isinstance(responses, dict) and question in responses:  # 2.x nested
        votes = []
        for order, response in enumerate(responses[question] or []):
            if not isinstance(response, dict):
                return [], "each response must be an object with a 'value'"
            if response.get("status", "submitted") != "submitted":
                continue
            label, problem = _single_choice(response.get("value"))
            if problem:
                return [], problem
            when, time_problem = _time_field(response, ("updated_at", "inserted_at"))
            if time_problem:
                return [], time_problem
            if label:
                votes.append(_Vote(label, when, order, str(response.get("user_id") or "")))
        return votes, None
    flat = f"{question}.responses"
    if flat in record:  # 2.x flattened (to_list(flatten=True) / to_datasets)
        values = record.get(flat) or []
        statuses = record.get(f"{flat}.status") or ["submitted"] * len(values)
        users = record.get(f"{flat}.users") or [""] * len(values)
        if not isinstance(values, list):
            values = [values]
        votes = []
        for order, (value, status, user) in enumerate(zip(values, statuses, users, strict=False)):
            if status != "submitted":
                continue
            label, problem = _single_choice(value)
            if problem:
                return [], problem
            if label:
                votes.append(_Vote(label, None, order, str(user or "")))
        return votes, None
    for name in ("annotation", question):  # 1.x `annotation`, or the flat form
        if name in record and not isinstance(record[name], dict):
            label, problem = _single_choice(record[name])
            if problem:
                return [], problem
            when, time_problem = _time_field(record, ("updated_at",))
            if time_problem:
                return [], time_problem
            return ([_Vote(label, when, 0, str(record.get("annotation_agent") or ""))] if label else []), None
    if (
        isinstance(record.get(question), dict) and "responses" in record[question]
    ):  # {"label": {"responses": …}}
        return _argilla_votes({flat: record[question]["responses"]}, question)
    return [], None


# --- doccano, CSV, feedback ---------------------------------------------------------------------


def parse_doccano(path: Path, options: ImportOptions) -> Parsed:
    """doccano text-classification JSONL: `text` and `label` (a list with one name, or a string)."""
    parsed = Parsed()
    for where, record in _objects(path, parsed, "record"):
        parsed.read += 1
        if not isinstance(record, dict):
            parsed.problems.append(Problem(where, None, "expected an object"))
            continue
        label, problem = _single_choice(record.get("label", record.get("cats")))
        if problem:
            parsed.problems.append(Problem(where, "label", problem))
            continue
        if label is None:
            parsed.unlabelled.append(where)
            continue
        raw = {"text": record.get(options.text_field), "label": label, **_canonical_extras(record)}
        _require_text(where, record, options.text_field, parsed, raw, None)
    return parsed


def parse_csv(path: Path, options: ImportOptions) -> Parsed:
    """Any CMS export with a header: columns named by --text-col, --label-col and friends."""
    parsed = Parsed()
    header = read_csv_header(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    columns = {name: options.columns.get(name, name) for name in CSV_FIELDS}
    required = {"text", "label"} | set(options.explicit_columns)
    missing = [
        (name, columns[name]) for name in CSV_FIELDS if name in required and columns[name] not in header
    ]
    if options.decided_column and options.decided_column not in header:
        missing.append(("decided", options.decided_column))
    if missing:
        named = ", ".join(f"'{column}' (for {name})" for name, column in missing)
        raise ImportUsageError(f"{path}: no column {named}; the columns present are: {', '.join(header)}")
    present = {name: column for name, column in columns.items() if column in header}
    for where, row in _csv_rows(path, parsed):
        parsed.read += 1
        raw = {name: row[column] for name, column in present.items() if row[column] != "" or name == "text"}
        if not raw.get("label"):
            parsed.unlabelled.append(where)
            continue
        decided_at = None
        if options.decided_column:
            decided_at, problem = _time_field(row, (options.decided_column,))
            if problem:
                parsed.problems.append(Problem(where, options.decided_column, problem))
                continue
        parsed.candidates.append(Candidate(where, raw, decided_at))
    return parsed


def parse_feedback(path: Path, options: ImportOptions) -> Parsed:
    """A canonical JSONL from `raqib feedback export`: validated by the data contract, copied in."""
    parsed = Parsed()
    for where, record in _objects(path, parsed, "record"):
        parsed.read += 1
        if not isinstance(record, dict):
            parsed.problems.append(Problem(where, None, "expected an object"))
            continue
        parsed.candidates.append(Candidate(where, dict(record), None))
    return parsed


PARSERS = {
    "labelstudio": parse_labelstudio,
    "argilla": parse_argilla,
    "doccano": parse_doccano,
    "csv": parse_csv,
    "feedback": parse_feedback,
}


# --- labels and validation ----------------------------------------------------------------------


def parse_label_map(items: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """`--map spam=spam,ham=on_topic` (repeatable) as {export label: our label}."""
    mapping: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            match = MAP_ITEM.match(part)
            if not match:
                raise ImportUsageError(
                    f"--map {part.strip()!r}: expected EXPORT_LABEL=label, e.g. ham=on_topic"
                )
            source, target = match.groups()
            if target not in known:
                raise ImportUsageError(
                    f"--map {part.strip()!r}: {target!r} is not a known label (known: {', '.join(known)}; "
                    "add it with --labels)"
                )
            mapping[source] = target
    return mapping


def validate_candidate(
    candidate: Candidate, label_map: Mapping[str, str], known: Sequence[str], source: str
) -> LabeledRecord | Problem:
    """Map the label, stamp the source, check the data contract; a Problem names where and why."""
    raw = dict(candidate.raw)
    original = raw.get("label")
    if isinstance(original, str):
        raw["label"] = label_map.get(original.strip(), original.strip())
    if not raw.get("source"):
        raw["source"] = source
    try:
        return validate_record(raw, path=candidate.where.path, line=0, allowed_labels=known)
    except ContractError as exc:
        message = exc.message
        if exc.field == "label" and isinstance(original, str) and original.strip() not in label_map:
            message += f"; map it with --map {original.strip()}=<label>"
        return Problem(candidate.where, exc.field, message)


# --- de-duplication and latest-wins -------------------------------------------------------------


def dedup_key(record: LabeledRecord) -> tuple[str, str]:
    """Two records are the same comment when normalised text and article id agree."""
    return normalize(record.text), record.article_id or ""


@dataclass
class Decision:
    """A labelled record with where it came from and when the moderator decided (if known)."""

    record: LabeledRecord
    decided_at: datetime | None
    origin: str  # file name in data/labeled, or the location in the input being imported
    line: int
    order: int

    def describe(self) -> str:
        """`label` at file:line, for reports."""
        return f"{self.record.label} at {self.origin}" + (f":{self.line}" if self.line else "")


def later_decision_wins(new: Decision, old: Decision) -> bool:
    """The rule: the later decision time wins when both are known, else the later record wins."""
    if new.decided_at is not None and old.decided_at is not None:
        return new.decided_at >= old.decided_at
    return True


class LatestWins:
    """Offers records in order and keeps, per comment, the latest moderator decision."""

    def __init__(self) -> None:
        self.winners: dict[tuple[str, str], Decision] = {}

    def offer(self, decision: Decision) -> tuple[str, Decision | None]:
        """'added', 'duplicate' (same label already kept), 'replaced' or 'kept' (new one lost)."""
        key = dedup_key(decision.record)
        old = self.winners.get(key)
        if old is None:
            self.winners[key] = decision
            return "added", None
        if old.record.label == decision.record.label:
            return "duplicate", old
        if later_decision_wins(decision, old):
            self.winners[key] = decision
            return "replaced", old
        return "kept", old


def _meta_path(jsonl: Path) -> Path:
    return jsonl.with_name(jsonl.stem + META_SUFFIX)


def _decided_times(jsonl: Path) -> dict[int, datetime]:
    """Per output line, the moderator decision time an import recorded in its sidecar."""
    meta = _meta_path(jsonl)
    if not meta.is_file():
        return {}
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8")).get("decided_at") or {}
        return {int(line): parse_time(when) for line, when in recorded.items() if when}
    except (OSError, ValueError, AttributeError):
        return {}  # a damaged sidecar only loses the times; file order still decides


def _labeled_decisions(directory: Path, allowed_labels: Sequence[str] | None) -> Iterator[Decision]:
    order = 0
    for path in sorted(directory.glob("*.jsonl")):
        times = _decided_times(path)
        for line, raw in iter_raw_rows(path):
            record = validate_record(raw, path=path, line=line, allowed_labels=allowed_labels)
            order += 1
            yield Decision(record, times.get(line), path.name, line, order)


def resolve_directory(directory: str | Path, allowed_labels: Sequence[str] | None = None) -> LatestWins:
    """The latest decision per comment over every JSONL file of a directory, in file-name order."""
    resolver = LatestWins()
    directory = Path(directory)
    if directory.is_dir():
        for decision in _labeled_decisions(directory, allowed_labels):
            resolver.offer(decision)
    return resolver


def resolved_labeled_records(
    directory: str | Path, allowed_labels: Sequence[str] | None = None
) -> list[LabeledRecord]:
    """Every record under data/labeled/, de-duplicated, each comment at its latest decision."""
    winners = resolve_directory(directory, allowed_labels).winners.values()
    return [d.record for d in sorted(winners, key=lambda d: d.order)]


# --- the import ---------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What one import read, kept, dropped and wrote."""

    format: str
    input: Path
    read: int = 0
    unlabelled: int = 0
    problems: list[Problem] = field(default_factory=list)
    annotation_conflicts: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    superseded: list[dict[str, Any]] = field(default_factory=list)
    lost: int = 0  # rows that lost a conflict to a later decision
    written: int = 0
    output: Path | None = None
    meta: Path | None = None
    already_imported: list[str] = field(default_factory=list)

    @property
    def invalid(self) -> int:
        return len(self.problems)

    def counts(self) -> dict[str, int]:
        """The numbers in the report table and the sidecar."""
        return {
            "read": self.read,
            "unlabelled": self.unlabelled,
            "invalid": self.invalid,
            "duplicates_dropped": len(self.duplicates),
            "conflicts_resolved": len(self.conflicts),
            "superseded_existing": len(self.superseded),
            "lost_to_later_decision": self.lost,
            "annotation_conflicts": len(self.annotation_conflicts),
            "written": self.written,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_stem(path: Path) -> str:
    return re.sub(r"[^\w.-]+", "_", path.stem).strip("._") or "export"


def _reserve_output(out_dir: Path, fmt: str, input_path: Path, now: datetime) -> Path:
    """A new file whose name sorts after every earlier import's (name order = import order)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamps = [datetime.strptime(m.group(1), STAMP_FORMAT).replace(tzinfo=UTC) for m in _stamps(out_dir)]
    when = now
    for _ in range(1000):
        # A clock that went back, or two imports in one microsecond, still get a later name.
        if stamps and when <= max(stamps):
            when = max(stamps) + timedelta(microseconds=1)
        candidate = out_dir / f"{when.strftime(STAMP_FORMAT)}-{fmt}-{_safe_stem(input_path)}.jsonl"
        try:
            candidate.open("x").close()  # exclusive create: two imports can never share a file
            return candidate
        except FileExistsError:
            stamps.append(when)
    raise ImportInputError(f"{out_dir}: cannot find a free file name for this import")


def _stamps(out_dir: Path) -> Iterator[re.Match[str]]:
    for path in out_dir.glob("*.jsonl"):
        match = STAMPED_NAME.match(path.name)
        if match:
            yield match


def _previous_imports(out_dir: Path, digest: str) -> list[str]:
    found = []
    for meta in sorted(out_dir.glob(f"*{META_SUFFIX}")):
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("input_sha256") == digest:
            found.append(f"{data.get('output')} ({data.get('imported_at')})")
    return found


def import_export(
    fmt: str,
    input_path: Path,
    *,
    out_dir: Path = DEFAULT_OUT_DIR,
    options: ImportOptions | None = None,
    label_map: Mapping[str, str] | None = None,
    known_labels: Sequence[str] = DEFAULT_LABELS,
    skip_invalid: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    """Parse, validate, de-duplicate and append one export; nothing is written if a row is bad."""
    if fmt not in PARSERS:
        raise ImportUsageError(f"unknown format {fmt!r} (use one of: {', '.join(FORMATS)})")
    options = options or ImportOptions()
    label_map = dict(label_map or {})
    now = now or datetime.now(UTC)
    try:
        parsed = PARSERS[fmt](input_path, options)
    except ScoreInputError as exc:  # no header, broken quoting: the file as a whole is unreadable
        raise ImportInputError(str(exc)) from None
    report = ImportReport(format=fmt, input=input_path, read=parsed.read)
    report.unlabelled = len(parsed.unlabelled)
    report.annotation_conflicts = parsed.annotation_conflicts
    report.problems = list(parsed.problems)
    source = f"import:{fmt}"
    decisions: list[Decision] = []
    for order, candidate in enumerate(parsed.candidates, start=1):
        outcome = validate_candidate(candidate, label_map, known_labels, source)
        if isinstance(outcome, Problem):
            report.problems.append(outcome)
        else:
            decisions.append(Decision(outcome, candidate.decided_at, str(candidate.where), 0, order))
    report.problems.sort(key=lambda p: (p.where.path, p.where.number))
    if report.problems and not skip_invalid:
        return report  # nothing written: the caller lists the problems and exits non-zero

    # Within the import: one decision per comment, the latest.
    own = LatestWins()
    for decision in decisions:
        outcome, other = own.offer(decision)
        if outcome == "duplicate":
            report.duplicates.append(f"{decision.origin} repeats {other.origin}")
        elif outcome in ("replaced", "kept"):
            winner, loser = (decision, other) if outcome == "replaced" else (other, decision)
            report.conflicts.append(f"{loser.describe()} → {winner.describe()} ({_why(winner, loser)})")
            report.lost += 1
    # Against what data/labeled/ already holds (same rule, so training reads the same outcome).
    baseline = resolve_directory(out_dir, allowed_labels=None)
    to_write: list[Decision] = []
    for decision in sorted(own.winners.values(), key=lambda d: d.order):
        old = baseline.winners.get(dedup_key(decision.record))
        if old is None:
            to_write.append(decision)
        elif old.record.label == decision.record.label:
            report.duplicates.append(f"{decision.origin} is already in {old.origin}:{old.line}")
        elif later_decision_wins(decision, old):
            to_write.append(decision)
            report.conflicts.append(f"{old.describe()} → {decision.describe()} ({_why(decision, old)})")
            report.superseded.append({"file": old.origin, "line": old.line, "by": decision.origin})
        else:
            report.conflicts.append(f"{decision.describe()} → {old.describe()} ({_why(old, decision)})")
            report.lost += 1

    digest = _sha256(input_path)
    report.already_imported = _previous_imports(out_dir, digest) if out_dir.is_dir() else []
    output = _reserve_output(out_dir, fmt, input_path, now)
    output_sha = write_jsonl([d.record for d in to_write], output)
    report.written = len(to_write)
    report.output = output
    for line, decision in enumerate(to_write, start=1):
        for entry in report.superseded:
            if entry["by"] == decision.origin:
                entry["by_line"] = line
    meta = {
        "format": fmt,
        "input": str(input_path),
        "input_sha256": digest,
        "imported_at": now.isoformat(timespec="seconds"),
        "output": output.name,
        "output_sha256": output_sha,
        "counts": report.counts(),
        "known_labels": list(known_labels),
        "label_map": label_map,
        "skip_invalid": skip_invalid,
        "rule": "same comment = same normalised text and article_id; latest moderator decision wins "
        "(decision times when both known, else the later import / later line)",
        "superseded": report.superseded,
        "conflicts": report.conflicts,
        "annotation_conflicts": report.annotation_conflicts,
        "duplicates": report.duplicates,
        "problems": [str(p) for p in report.problems],
        "unlabelled": [str(where) for where in parsed.unlabelled],
        # Per output line: when the moderator decided; later imports compare against these.
        "decided_at": {
            str(line): d.decided_at.isoformat() for line, d in enumerate(to_write, start=1) if d.decided_at
        },
    }
    report.meta = _meta_path(output)
    report.meta.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return report


def _why(winner: Decision, loser: Decision) -> str:
    if winner.decided_at is not None and loser.decided_at is not None:
        return f"decided later, {winner.decided_at.isoformat()}"
    return "later record"
