"""Aljazeera.net comments DELETED by moderators, crowd-labelled for language (Mubarak et al. 2017).

Label: level -1 (offensive) and -2 (obscene) → `abusive`. Level 0 ("clean") is EXCLUDED, never
`on_topic`: those comments were also deleted, for reasons nobody recorded (some are probably
off-topic or spam). The set has no kept comments, no article and no URL.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from serving.schema import ABUSIVE
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "aljazeera_deleted"
FOLDER = "aljazeera_deleted_comments_mubarak2017"
SPLITS = ("train", "dev", "test")
FILES = tuple(f"{FOLDER}/AJ-{split}.tsv" for split in SPLITS)
LABELS = {"-1": ABUSIVE, "-2": ABUSIVE}
EXCLUDED_LEVELS = frozenset({"0"})
SITE = "aljazeera"


def read_levels(paths: Sequence[Path]) -> Iterator[tuple[str, int, str, str]]:
    """(split, row number, text, level) of every row of the three files (shared with aljazeera_levels)."""
    for split, path in zip(SPLITS, paths, strict=True):
        with path.open(encoding="utf-8", newline="") as handle:
            # Texts hold raw quotes; the files are plain TSV without quoting.
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[1:3]] != ["text", "level"]:
                raise ValueError(f"{path}: expected header '<TAB>text<TAB>level'")
            for row_number, row in enumerate(reader, start=1):
                if row:
                    yield split, row_number, row[1], row[2].strip() if len(row) > 2 else ""


def level_records(
    paths: Sequence[Path], source: str, labels: dict[str, str], excluded: frozenset[str] = frozenset()
) -> Iterator[LabeledRecord]:
    """Records of the rows whose level maps through `labels` (`excluded` levels skipped)."""
    for split, row_number, text, level in read_levels(paths):
        if level in excluded:
            continue
        if level not in labels:
            raise ValueError(f"{paths[SPLITS.index(split)]}: row {row_number}: unknown level {level!r}")
        yield LabeledRecord(
            text=text,
            label=labels[level],
            comment_id=f"{source}:{split}_{row_number}",
            site=SITE,
            source=source,
        )


def load_aljazeera_deleted(root: Path) -> Iterator[LabeledRecord]:
    """Offensive and obscene deletions from the three files; clean deletions are dropped."""
    paths = require(root, *FILES)
    yield from finalize(level_records(paths, SOURCE, LABELS, EXCLUDED_LEVELS))
