"""Aljazeera.net deleted comments (Mubarak et al. 2017) with BOTH language levels, for comparison.

Origin: `aljazeera_deleted_comments_mubarak2017/` (the same files as the product's
`aljazeera_deleted`, which keeps only the abusive levels). Every row was deleted by Aljazeera's
moderators; there is no kept comment from that site. Crowd workers then labelled the language.
Label: -1 (offensive) and -2 (obscene) → `abusive`; 0 ("clean": deleted, but not for its
language) → `on_topic`, which here only means "not abusive language". Those clean deletions are
the only same-site negatives that exist; they let the model see Aljazeera-style political
commentary on both sides of the label instead of only on the abusive side.
Whether to use this source at all (and at what weight) was measured by the abuse bench section
(experiments/RESULTS.md, "Abuse: leave-one-source-out"); the public config leaves it out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from serving.schema import ABUSIVE, ON_TOPIC
from training.data.contract import LabeledRecord
from training.data.datasets.common import finalize, require

SOURCE = "aljazeera_levels"
FOLDER = "aljazeera_deleted_comments_mubarak2017"
SPLITS = ("train", "dev", "test")
FILES = tuple(f"{FOLDER}/AJ-{split}.tsv" for split in SPLITS)
LABELS = {"-1": ABUSIVE, "-2": ABUSIVE, "0": ON_TOPIC}
SITE = "aljazeera"


def load_aljazeera_levels(root: Path) -> Iterator[LabeledRecord]:
    """All rows of the three files with their language level mapped."""
    paths = require(root, *FILES)

    def raw() -> Iterator[LabeledRecord]:
        for split, path in zip(SPLITS, paths, strict=True):
            with path.open(encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
                header = next(reader, None)
                if header is None or [h.strip() for h in header[1:3]] != ["text", "level"]:
                    raise ValueError(f"{path}: expected header '<TAB>text<TAB>level'")
                for number, row in enumerate(reader, start=1):
                    if not row:
                        continue
                    level = row[2].strip() if len(row) > 2 else ""
                    if level not in LABELS:
                        raise ValueError(f"{path}: row {number}: unknown level {level!r}")
                    yield LabeledRecord(
                        text=row[1],
                        label=LABELS[level],
                        comment_id=f"{SOURCE}:{split}_{number}",
                        site=SITE,
                        source=SOURCE,
                    )

    yield from finalize(raw())
