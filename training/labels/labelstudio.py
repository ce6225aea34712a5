"""Label Studio exports of a choices project: JSON (tasks with annotations), JSON_MIN and CSV."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from training.data.contract import OPTIONAL_COLUMNS
from training.data.tables import delimiter_of, read_csv_header
from training.labels.common import (
    ImportInputError,
    ImportOptions,
    ImportUsageError,
    Location,
    Parsed,
    Problem,
    Vote,
    add_voted,
    canonical_extras,
    csv_records,
    read_json_document,
    require_text,
    single_choice,
    time_field,
)

# Label Studio's own columns in JSON_MIN/CSV exports; whatever else is not data is the choice.
LABEL_STUDIO_META = frozenset({"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"})


def parse(path: Path, options: ImportOptions) -> Parsed:
    """Label Studio JSON (tasks with annotations), JSON_MIN or CSV exports of a choices project."""
    parsed = Parsed()
    if path.suffix.lower() in (".csv", ".tsv"):
        choice = choice_column(read_csv_header(path, delimiter_of(path.suffix)), options, path)
        return _parse_flat_annotations(csv_records(path, parsed), parsed, options, choice)
    document = read_json_document(path)
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
        choice = choice_column(keys, options, path)
        return _parse_flat_annotations(iter(located), parsed, options, choice)
    for where, task in located:
        parsed.read += 1
        _parse_task(where, task, options, parsed)
    return parsed


def choice_column(columns: Sequence[str], options: ImportOptions, path: Path) -> str:
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
    tasks: dict[str, tuple[Location, dict[str, Any], list[Vote]]] = {}
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
        label, problem = single_choice(row.get(choice))
        decided_at, time_problem = time_field(row, ("updated_at", "created_at"))
        if problem or time_problem:
            parsed.problems.append(
                Problem(where, choice if problem else "updated_at", problem or time_problem or "")
            )
            tasks.pop(key, None)
            broken.add(key)
            continue
        if label is not None:
            tasks[key][2].append(Vote(label, decided_at, order, str(row.get("annotator") or "")))
    for where, row, votes in tasks.values():
        chosen = add_voted(parsed, where, votes)
        if chosen is None:
            continue
        raw = {
            "text": row.get(options.text_field),
            "label": chosen.label,
            # JSON_MIN's created_at/updated_at are the annotation's times, not the comment's.
            **{k: v for k, v in canonical_extras(row).items() if k != "created_at"},
        }
        require_text(where, row, options.text_field, parsed, raw, chosen.decided_at)
    return parsed


def _parse_task(where: Location, task: Any, options: ImportOptions, parsed: Parsed) -> None:
    """One task of a full JSON export: its data and its (possibly several) annotations."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        parsed.problems.append(Problem(where, "data", "expected a task object with a 'data' object"))
        return
    data = task["data"]
    votes: list[Vote] = []
    annotations = task.get("annotations", task.get("completions")) or []
    for order, annotation in enumerate(annotations):
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        label, problem = _annotation_choice(annotation.get("result") or [], options.choice_field)
        decided_at, time_problem = time_field(annotation, ("updated_at", "created_at"))
        if problem or time_problem:
            parsed.problems.append(Problem(where, "annotations", problem or time_problem or ""))
            return
        if label is not None:
            who = annotation.get("completed_by")
            if isinstance(who, dict):
                who = who.get("email") or who.get("id")
            votes.append(Vote(label, decided_at, order, str(who or "")))
    chosen = add_voted(parsed, where, votes)
    if chosen is None:
        return
    raw = {"text": data.get(options.text_field), "label": chosen.label, **canonical_extras(data)}
    require_text(where, data, options.text_field, parsed, raw, chosen.decided_at, prefix="data.")


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
    return single_choice(next(iter(found.values())))
