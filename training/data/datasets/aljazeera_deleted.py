"""Aljazeera.net comments DELETED by moderators, crowd-labelled for language (Mubarak et al. 2017).

Label: level -1 (offensive) and -2 (obscene) → `abusive`. Level 0 ("clean") is EXCLUDED, never
`on_topic`: those comments were also deleted, for reasons nobody recorded (some are probably
off-topic or spam). The set has no kept comments, no article and no URL.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
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


def load_aljazeera_deleted(root: Path) -> Iterator[LabeledRecord]:
    """Offensive and obscene deletions from the three files; clean deletions are dropped."""
    paths = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        for split, path in zip(SPLITS, paths, strict=True):
            with path.open(encoding="utf-8", newline="") as handle:
                # Texts hold raw quotes; the files are plain TSV without quoting.
                reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
                header = next(reader, None)
                if header is None or [h.strip() for h in header[1:3]] != ["text", "level"]:
                    raise ValueError(f"{path}: expected header '<TAB>text<TAB>level'")
                for row_number, row in enumerate(reader, start=1):
                    if not row:
                        continue
                    level = row[2].strip() if len(row) > 2 else ""
                    if level in EXCLUDED_LEVELS:
                        continue
                    if level not in LABELS:
                        raise ValueError(f"{path}: row {row_number}: unknown level {level!r}")
                    yield LabeledRecord(
                        text=row[1],
                        label=LABELS[level],
                        comment_id=f"{SOURCE}:{split}_{row_number}",
                        site=SITE,
                        source=SOURCE,
                    )

    yield from finalize(raw())
