"""doccano text-classification exports (JSONL or a JSON array): `text` and `label`."""

from __future__ import annotations

from pathlib import Path

from training.labels.common import (
    ImportOptions,
    Parsed,
    Problem,
    canonical_extras,
    objects,
    require_text,
    single_choice,
)


def parse(path: Path, options: ImportOptions) -> Parsed:
    """doccano text-classification JSONL: `text` and `label` (a list with one name, or a string)."""
    parsed = Parsed()
    for where, record in objects(path, parsed, "record"):
        parsed.read += 1
        if not isinstance(record, dict):
            parsed.problems.append(Problem(where, None, "expected an object"))
            continue
        label, problem = single_choice(record.get("label", record.get("cats")))
        if problem:
            parsed.problems.append(Problem(where, "label", problem))
            continue
        if label is None:
            parsed.unlabelled.append(where)
            continue
        raw = {"text": record.get(options.text_field), "label": label, **canonical_extras(record)}
        require_text(where, record, options.text_field, parsed, raw, None)
    return parsed
