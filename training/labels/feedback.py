"""`raqib feedback export` files: canonical JSONL, copied in after the data contract checks them."""

from __future__ import annotations

from pathlib import Path

from training.labels.common import Candidate, ImportOptions, Parsed, Problem, objects


def parse(path: Path, options: ImportOptions) -> Parsed:
    """A canonical JSONL from `raqib feedback export`: validated by the data contract, copied in."""
    parsed = Parsed()
    for where, record in objects(path, parsed, "record"):
        parsed.read += 1
        if not isinstance(record, dict):
            parsed.problems.append(Problem(where, None, "expected an object"))
            continue
        parsed.candidates.append(Candidate(where, dict(record), None))
    return parsed
