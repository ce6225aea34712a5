"""Import labelled exports (Label Studio, Argilla, doccano, CSV, feedback) as canonical JSONL.

Each tool's own module parses its export (`training.labels.labelstudio`, `argilla`, `doccano`,
`csv_export`, `feedback`); this module dispatches to it and runs the import the same way for all:
map the labels, validate against the data contract, keep one decision per comment, and append a
new file (with its `.meta.json` provenance) to data/labeled/, never rewriting an old one. The same
comment appearing again is a duplicate when the label agrees and a conflict when it does not; a
conflict goes to the latest moderator decision (`training.data.labeled.later_decision_wins`),
the rule training applies when it reads the directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from serving.schema import DEFAULT_LABELS, LABEL_PATTERN
from training.data.contract import ContractError, LabeledRecord, validate_record, write_jsonl
from training.data.labeled import (
    LABELED_DIR,
    META_SUFFIX,
    Decision,
    LatestWins,
    dedup_key,
    later_decision_wins,
    meta_path,
    resolve_directory,
    resolved_labeled_records,
)
from training.data.tables import TableInputError
from training.labels import argilla, csv_export, doccano, feedback, labelstudio
from training.labels.common import (
    Candidate,
    ImportInputError,
    ImportOptions,
    ImportUsageError,
    Location,
    Parsed,
    Problem,
)

Parser = Callable[[Path, ImportOptions], Parsed]
PARSERS: dict[str, Parser] = {
    "labelstudio": labelstudio.parse,
    "argilla": argilla.parse,
    "doccano": doccano.parse,
    "csv": csv_export.parse,
    "feedback": feedback.parse,
}
FORMATS = tuple(PARSERS)
DEFAULT_OUT_DIR = LABELED_DIR
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
STAMPED_NAME = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-")
MAP_ITEM = re.compile(r"^\s*([^=]+?)\s*=\s*(\S+?)\s*$")
RULE = (
    "same comment = same normalised text and article_id; latest moderator decision wins "
    "(decision times when both known, else the later import / later line)"
)

__all__ = [
    "FORMATS",
    "ImportInputError",
    "ImportOptions",
    "ImportReport",
    "ImportUsageError",
    "import_export",
    "parse_label_map",
    "resolved_labeled_records",
    "validate_candidate",
]


# --- labels and validation ----------------------------------------------------------------------


def parse_label_map(items: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """`--map spam=spam,ham=on_topic` (repeatable) as {export label: our label}."""
    mapping: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            match = MAP_ITEM.match(part)
            if not match or not LABEL_PATTERN.match(match.group(2)):
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


# --- the report ---------------------------------------------------------------------------------


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

    def conflict(self, winner: Decision, loser: Decision) -> None:
        """Record a conflict between two decisions on one comment (loser → winner, and why)."""
        self.conflicts.append(f"{loser.describe()} → {winner.describe()} ({_why(winner, loser)})")


def _why(winner: Decision, loser: Decision) -> str:
    if winner.decided_at is not None and loser.decided_at is not None:
        return f"decided later, {winner.decided_at.isoformat()}"
    return "later record"


# --- the import, step by step -------------------------------------------------------------------


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
    parsed = parse_input(fmt, input_path, options or ImportOptions())
    label_map = dict(label_map or {})
    report = ImportReport(
        format=fmt,
        input=input_path,
        read=parsed.read,
        unlabelled=len(parsed.unlabelled),
        annotation_conflicts=parsed.annotation_conflicts,
        problems=list(parsed.problems),
    )
    decisions = _validated(parsed, label_map, known_labels, f"import:{fmt}", report)
    if report.problems and not skip_invalid:
        return report  # nothing written: the caller lists the problems and exits non-zero
    own = _latest_within_import(decisions, report)
    to_write = _new_to_directory(own, out_dir, report)
    settings = {"known_labels": list(known_labels), "label_map": label_map, "skip_invalid": skip_invalid}
    _write(report, to_write, out_dir, now or datetime.now(UTC), settings, parsed.unlabelled)
    return report


def parse_input(fmt: str, input_path: Path, options: ImportOptions) -> Parsed:
    """The export read by its tool's parser; ImportInputError when the file as a whole is unreadable."""
    parser = PARSERS.get(fmt)
    if parser is None:
        raise ImportUsageError(f"unknown format {fmt!r} (use one of: {', '.join(FORMATS)})")
    try:
        return parser(input_path, options)
    except TableInputError as exc:  # no header, broken quoting: the file as a whole is unreadable
        raise ImportInputError(str(exc)) from None


def _validated(
    parsed: Parsed, label_map: Mapping[str, str], known: Sequence[str], source: str, report: ImportReport
) -> list[Decision]:
    """The candidates that pass the data contract; the others join the report's problems (sorted)."""
    decisions: list[Decision] = []
    for order, candidate in enumerate(parsed.candidates, start=1):
        outcome = validate_candidate(candidate, label_map, known, source)
        if isinstance(outcome, Problem):
            report.problems.append(outcome)
        else:
            decisions.append(Decision(outcome, candidate.decided_at, str(candidate.where), 0, order))
    report.problems.sort(key=lambda p: (p.where.path, p.where.number))
    return decisions


def _latest_within_import(decisions: Sequence[Decision], report: ImportReport) -> LatestWins:
    """One decision per comment within the import, the latest; repeats and conflicts are reported."""
    own = LatestWins()
    for decision in decisions:
        outcome, other = own.offer(decision)
        if other is None:
            continue
        if outcome == "duplicate":
            report.duplicates.append(f"{decision.origin} repeats {other.origin}")
        elif outcome == "replaced":
            report.conflict(decision, other)
            report.lost += 1
        elif outcome == "kept":
            report.conflict(other, decision)
            report.lost += 1
    return own


def _new_to_directory(own: LatestWins, out_dir: Path, report: ImportReport) -> list[Decision]:
    """The decisions to write, judged against what data/labeled/ holds with the rule training uses."""
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
            report.conflict(decision, old)
            report.superseded.append({"file": old.origin, "line": old.line, "by": decision.origin})
        else:
            report.conflict(old, decision)
            report.lost += 1
    return to_write


def _write(
    report: ImportReport,
    to_write: Sequence[Decision],
    out_dir: Path,
    now: datetime,
    settings: dict[str, Any],
    unlabelled: Sequence[Location],
) -> None:
    """Append the new JSONL file and its `.meta.json` sidecar (with the import's settings)."""
    digest = _sha256(report.input)
    report.already_imported = _previous_imports(out_dir, digest) if out_dir.is_dir() else []
    output = _reserve_output(out_dir, report.format, report.input, now)
    output_sha = write_jsonl([d.record for d in to_write], output)
    report.written = len(to_write)
    report.output = output
    for line, decision in enumerate(to_write, start=1):
        for entry in report.superseded:
            if entry["by"] == decision.origin:
                entry["by_line"] = line
    meta = {
        "format": report.format,
        "input": str(report.input),
        "input_sha256": digest,
        "imported_at": now.isoformat(timespec="seconds"),
        "output": output.name,
        "output_sha256": output_sha,
        "counts": report.counts(),
        **settings,
        "rule": RULE,
        "superseded": report.superseded,
        "conflicts": report.conflicts,
        "annotation_conflicts": report.annotation_conflicts,
        "duplicates": report.duplicates,
        "problems": [str(p) for p in report.problems],
        "unlabelled": [str(where) for where in unlabelled],
        # Per output line: when the moderator decided; later imports compare against these.
        "decided_at": {
            str(line): d.decided_at.isoformat() for line, d in enumerate(to_write, start=1) if d.decided_at
        },
    }
    report.meta = meta_path(output)
    report.meta.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# --- the output file ----------------------------------------------------------------------------


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
