"""Argilla records: flat `text` + `label`, 1.x `annotation`, 2.x `responses` (nested or flattened)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.labels.common import (
    ImportOptions,
    Parsed,
    Problem,
    Vote,
    add_voted,
    canonical_extras,
    objects,
    require_text,
    single_choice,
    time_field,
)


def parse(path: Path, options: ImportOptions) -> Parsed:
    """Argilla records (JSON array or JSONL): the answers to one question, latest submitted wins."""
    parsed = Parsed()
    question = options.choice_field or "label"
    for where, record in objects(path, parsed, "record"):
        parsed.read += 1
        if not isinstance(record, dict):
            parsed.problems.append(Problem(where, None, "expected an object"))
            continue
        fields = record.get("fields") if isinstance(record.get("fields"), dict) else None
        inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else None
        container = record if options.text_field in record else fields or inputs or record
        votes, problem = _votes(record, question)
        if problem:
            parsed.problems.append(Problem(where, question, problem))
            continue
        if str(record.get("status", "")).lower() == "discarded":
            parsed.unlabelled.append(where)
            continue
        chosen = add_voted(parsed, where, votes)
        if chosen is None:
            continue
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else None
        raw = {
            "text": container.get(options.text_field),
            "label": chosen.label,
            **canonical_extras(record, metadata),
        }
        prefix = "fields." if container is fields else "inputs." if container is inputs else ""
        require_text(where, container, options.text_field, parsed, raw, chosen.decided_at, prefix)
    return parsed


def _votes(record: dict[str, Any], question: str) -> tuple[list[Vote], str | None]:
    """Submitted answers to `question`, from whichever Argilla shape the record has."""
    responses = record.get("responses")
    if isinstance(responses, dict) and question in responses:
        return _nested_votes(responses[question] or [])
    flat = f"{question}.responses"
    if flat in record:
        return _flattened_votes(record, flat)
    for name in ("annotation", question):  # 1.x `annotation`, or the flat form
        if name in record and not isinstance(record[name], dict):
            label, problem = single_choice(record[name])
            if problem:
                return [], problem
            when, time_problem = time_field(record, ("updated_at",))
            if time_problem:
                return [], time_problem
            return ([Vote(label, when, 0, str(record.get("annotation_agent") or ""))] if label else []), None
    if isinstance(record.get(question), dict) and "responses" in record[question]:
        # {"label": {"responses": …}}: the flattened form nested under the question's name.
        return _votes({flat: record[question]["responses"]}, question)
    return [], None


def _nested_votes(responses: list[Any]) -> tuple[list[Vote], str | None]:
    """2.x nested: `responses[question]` is a list of {value, status, user_id, updated_at}."""
    votes = []
    for order, response in enumerate(responses):
        if not isinstance(response, dict):
            return [], "each response must be an object with a 'value'"
        if response.get("status", "submitted") != "submitted":
            continue
        label, problem = single_choice(response.get("value"))
        if problem:
            return [], problem
        when, time_problem = time_field(response, ("updated_at", "inserted_at"))
        if time_problem:
            return [], time_problem
        if label:
            votes.append(Vote(label, when, order, str(response.get("user_id") or "")))
    return votes, None


def _flattened_votes(record: dict[str, Any], flat: str) -> tuple[list[Vote], str | None]:
    """2.x flattened (to_list(flatten=True) / to_datasets): parallel value/status/user lists."""
    values = record.get(flat) or []
    statuses = record.get(f"{flat}.status") or ["submitted"] * len(values)
    users = record.get(f"{flat}.users") or [""] * len(values)
    if not isinstance(values, list):
        values = [values]
    votes = []
    for order, (value, status, user) in enumerate(zip(values, statuses, users, strict=False)):
        if status != "submitted":
            continue
        label, problem = single_choice(value)
        if problem:
            return [], problem
        if label:
            votes.append(Vote(label, None, order, str(user or "")))
    return votes, None
