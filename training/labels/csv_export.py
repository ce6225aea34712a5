"""Any CMS export with a header row (CSV or TSV): columns named by --text-col, --label-col and friends."""

from __future__ import annotations

from pathlib import Path

from serving.schema import CANONICAL_COLUMNS
from training.data.tables import delimiter_of, read_csv_header
from training.labels.common import (
    Candidate,
    ImportOptions,
    ImportUsageError,
    Parsed,
    Problem,
    csv_records,
    time_field,
)

# The canonical fields `raqib import csv` reads: the two it needs first, in the order a missing
# column is reported, then the optional ones.
CSV_FIELDS = ("text", "label", *(c for c in CANONICAL_COLUMNS if c not in ("text", "label")))


def parse(path: Path, options: ImportOptions) -> Parsed:
    """Each labelled row as a candidate; an unlabelled one is counted, a bad decision time is a problem."""
    parsed = Parsed()
    header = read_csv_header(path, delimiter_of(path.suffix))
    columns = _present_columns(path, header, options)
    for where, row in csv_records(path, parsed):
        parsed.read += 1
        raw = {name: row[column] for name, column in columns.items() if row[column] != "" or name == "text"}
        if not raw.get("label"):
            parsed.unlabelled.append(where)
            continue
        decided_at = None
        if options.decided_column:
            decided_at, problem = time_field(row, (options.decided_column,))
            if problem:
                parsed.problems.append(Problem(where, options.decided_column, problem))
                continue
        parsed.candidates.append(Candidate(where, raw, decided_at))
    return parsed


def _present_columns(path: Path, header: list[str], options: ImportOptions) -> dict[str, str]:
    """Canonical field → export column for the fields present; ImportUsageError names a missing one."""
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
    return {name: column for name, column in columns.items() if column in header}
