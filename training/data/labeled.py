"""data/labeled/: the labelled records that imports append, read back with one rule per comment.

Every import (`raqib import`) appends a new JSONL file and never rewrites an old one, so the same
comment (normalised text + article id) can sit in several files. The rule that resolves them —
the latest moderator decision wins — lives here, so that training reading the directory and an
import checking what the directory already holds reach the same outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from serving.text.normalize import normalize
from training.data.contract import LabeledRecord, iter_raw_rows, validate_record

LABELED_DIR = Path("data/labeled")
# Beside each imported `X.jsonl`: `X.meta.json`, its provenance and each line's decision time.
META_SUFFIX = ".meta.json"

Offer = Literal["added", "duplicate", "replaced", "kept"]


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

    def offer(self, decision: Decision) -> tuple[Offer, Decision | None]:
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


def meta_path(jsonl: Path) -> Path:
    """The provenance sidecar of an imported JSONL file."""
    return jsonl.with_name(jsonl.stem + META_SUFFIX)


def decided_times(jsonl: Path) -> dict[int, datetime]:
    """Per output line, the moderator decision time an import recorded in its sidecar."""
    meta = meta_path(jsonl)
    if not meta.is_file():
        return {}
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8")).get("decided_at") or {}
        times = {int(line): parse_time(when) for line, when in recorded.items() if when}
    except (OSError, ValueError, AttributeError):
        return {}  # a damaged sidecar only loses the times; file order still decides
    return {line: when for line, when in times.items() if when is not None}


def _labeled_decisions(directory: Path, allowed_labels: Sequence[str] | None) -> Iterator[Decision]:
    order = 0
    for path in sorted(directory.glob("*.jsonl")):
        times = decided_times(path)
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
